"""Reads for views and the API."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q
from django.db.models.functions import Now

from . import permissions
from .models import Job, Volume, VolumeCommit, Workspace

SORTS = {"name": "name", "-name": "-name", "size": "size_bytes", "-size": "-size_bytes",
         "used": "last_used_at", "-used": "-last_used_at", "files": "file_count", "-files": "-file_count"}


@dataclass
class VolumeRow:
    volume: Volume
    access: permissions.Access
    leased: bool


def workspaces_for_user(user):
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def volume_list_for_user(user, workspace: Workspace, search: str = "", sort: str = "name") -> list[VolumeRow]:
    """The volumes the user may see, with their access and whether they are leased now."""
    qs = Volume.objects.filter(workspace=workspace).select_related("owner", "lease_job")
    if search:
        qs = qs.filter(name__icontains=search)
    qs = qs.order_by(SORTS.get(sort, "name"), "name")
    volumes = list(qs)
    rights = permissions.access_many(user, volumes)
    leased = set(
        Volume.objects.filter(pk__in=[v.pk for v in volumes], lease_expires_at__gt=Now()).values_list("pk", flat=True)
    )
    return [VolumeRow(v, rights[v.pk], v.pk in leased) for v in volumes if rights[v.pk].can_see]


def volume_is_leased(volume: Volume) -> bool:
    return Volume.objects.filter(pk=volume.pk, lease_expires_at__gt=Now()).exists()


def volume_history(volume: Volume):
    return VolumeCommit.objects.filter(volume=volume).select_related("user", "job").order_by("-generation")


def volume_recent_jobs(volume: Volume, limit: int = 5):
    return Job.objects.filter(mounts__volume=volume).select_related("user").order_by("-created_at")[:limit]


def jobs_for_user(user, workspace: Workspace):
    """Admins see every job of the workspace; members see their own."""
    qs = Job.objects.filter(workspace=workspace).select_related("user")
    if permissions.role(user, workspace) != "admin":
        qs = qs.filter(Q(user=user))
    return qs
