"""Reads for views and the API."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.contrib.auth import get_user_model
from django.db.models import Count
from django.db.models.functions import Now

from . import conf, permissions
from .engine import leases
from .exceptions import NotFound
from .models import ApiToken, Job, JobLogChunk, Membership, ObjectStorage, Volume, VolumeCommit, VolumePin, Workspace

SORTS = {"name": "name", "-name": "-name", "size": "size_bytes", "-size": "-size_bytes",
         "used": "last_used_at", "-used": "-last_used_at", "files": "file_count", "-files": "-file_count"}


@dataclass
class VolumeRow:
    volume: Volume
    access: permissions.Access
    leased: bool
    waiting: int = 0  # jobs waiting for its lease
    readers: int = 0  # live pins

    @cached_property
    def usage(self) -> "Usage | None":
        return volume_usage(self.volume)


def workspaces_for_user(user):
    return Workspace.objects.filter(memberships__user=user).order_by("name")


def volume_list_for_user(user, workspace: Workspace, search: str = "", sort: str = "name") -> list[VolumeRow]:
    """The volumes the user may see, with their access and whether they are leased now."""
    qs = Volume.objects.filter(workspace=workspace).select_related("owner", "lease_job", "workspace")
    if search:
        qs = qs.filter(name__icontains=search)
    qs = qs.order_by(SORTS.get(sort, "name"), "name")
    volumes = list(qs)
    rights = permissions.access_many(user, volumes)
    leased = set(
        Volume.objects.filter(pk__in=[v.pk for v in volumes], lease_expires_at__gt=Now()).values_list("pk", flat=True)
    )
    ids = [v.pk for v in volumes]
    waiting = dict(leases.waiting_for_lease(volume_id__in=ids).values("mounts__volume_id")
                   .annotate(n=Count("pk", distinct=True)).values_list("mounts__volume_id", "n"))
    readers = dict(VolumePin.objects.filter(volume_id__in=ids, expires_at__gt=Now()).values("volume_id")
                   .annotate(n=Count("pk")).values_list("volume_id", "n"))
    return [VolumeRow(v, rights[v.pk], v.pk in leased, waiting.get(v.pk, 0), readers.get(v.pk, 0))
            for v in volumes if rights[v.pk].can_see]


def jobs_waiting_for(volume: Volume) -> list[int]:
    """The ids of the jobs waiting for the volume's lease, oldest first."""
    return list(leases.waiting_for_lease(volume=volume).order_by("pk").values_list("pk", flat=True).distinct())


@dataclass
class Usage:
    """What a volume stores against the cap that is enforced on it (history included)."""

    stored_bytes: int
    cap_bytes: int
    percent: int  # may pass 100: a cap can be set below what the volume stores
    level: str  # "", "warning" from 80 %, "error" from 100 %

    @property
    def bar_percent(self) -> int:
        return min(self.percent, 100)


WARN_PERCENT = 80


def volume_usage(volume: Volume) -> Usage | None:
    """The volume's storage against its enforced cap (see `Volume.size_cap`); None without a cap."""
    from .engine.commits import kept_bytes

    cap = volume.size_cap
    if cap is None:
        return None
    stored = kept_bytes(volume.pk, volume.generation)
    percent = 100 if cap == 0 and stored == 0 else (stored * 100 // cap if cap else 1000)
    level = "error" if percent >= 100 else "warning" if percent >= WARN_PERCENT else ""
    return Usage(stored, cap, percent, level)


def volume_count(workspace: Workspace, with_trash: bool = False) -> int:
    """Live volumes of the workspace; with_trash: those in its trash too (they count against the limit)."""
    return (Volume.all_objects if with_trash else Volume.objects).filter(workspace=workspace).count()


def volume_generation_choices(volume: Volume) -> list[tuple[int, str]]:
    """The kept generations of a volume, newest first, as (generation, label) for a form's choices."""
    rows = VolumeCommit.objects.filter(volume=volume).order_by("-generation").values_list(
        "generation", "created_at", "file_count")
    return [(g, f"#{g}{' (current)' if g == volume.generation else ''} · {created:%Y-%m-%d %H:%M} · "
                f"{files:,} file{'s' if files != 1 else ''}") for g, created, files in rows] or [(0, "#0 (empty)")]


def free_volume_name(workspace: Workspace, wanted: str) -> str:
    """`wanted`, or `wanted-2`, `wanted-3`... whichever no volume of the workspace (the trash too) has."""
    taken = {n.lower() for n in Volume.all_objects.filter(workspace=workspace, name__istartswith=wanted)
             .values_list("name", flat=True)}
    name, n = wanted, 1
    while name.lower() in taken:
        n += 1
        name = f"{wanted}-{n}"
    return name


def volume_is_leased(volume: Volume) -> bool:
    return Volume.objects.filter(pk=volume.pk, lease_expires_at__gt=Now()).exists()


def volume_lease_holder(volume_id: int):
    """Who holds the volume's lease now (engine.leases.Holder), or None."""
    return leases.current_holder(volume_id)


def volume_readers(volume: Volume) -> list:
    """The readers pinned to the volume now (live pins), by generation, each with its job and worker."""
    return list(VolumePin.objects.filter(volume=volume, expires_at__gt=Now()).select_related("job")
                .order_by("generation", "pinned_at"))


def volume_history(volume: Volume):
    return VolumeCommit.objects.filter(volume=volume).select_related("user", "job").order_by("-generation")


def volume_commit(volume: Volume, generation: int) -> VolumeCommit | None:
    return VolumeCommit.objects.filter(volume=volume, generation=generation).select_related("user", "job").first()


def volume_commits_by_generation(volume: Volume, generations: set[int]) -> dict[int, VolumeCommit]:
    rows = VolumeCommit.objects.filter(volume=volume, generation__in=generations).select_related("user", "job")
    return {c.generation: c for c in rows}


def volume_size_series(volume: Volume, limit: int = 200) -> list[tuple[int, int, int]]:
    """(generation, size in bytes, file count) of the last `limit` generations, oldest first."""
    rows = VolumeCommit.objects.filter(volume=volume).order_by("-generation")
    return list(rows.values_list("generation", "size_bytes", "file_count")[:limit])[::-1]


def volume_older_generation_count(volume: Volume) -> int:
    return VolumeCommit.objects.filter(volume=volume).exclude(generation=volume.generation).count()


def volume_recent_jobs(volume: Volume, limit: int = 5):
    return Job.objects.filter(mounts__volume=volume).select_related("user").order_by("-created_at")[:limit]


def jobs_for_user(user, workspace: Workspace):
    """The jobs the user may see (permissions.visible_jobs), with their users."""
    return permissions.visible_jobs(user, workspace).select_related("user")


def job_list(user, workspace: Workspace, status: str = "", username: str = "", volume_name: str = ""):
    """The jobs the user may see, narrowed by status, user name and mounted volume name (empty: any)."""
    qs = jobs_for_user(user, workspace)
    if status:
        qs = qs.filter(status=status)
    if username:
        qs = qs.filter(user__username=username)
    if volume_name:
        qs = qs.filter(mounts__volume_name__iexact=volume_name).distinct()
    return qs


def job_volume_names(user, workspace: Workspace) -> list[str]:
    """The volume names mounted by the jobs the user may see, sorted case-insensitively."""
    names = jobs_for_user(user, workspace).filter(mounts__isnull=False).values_list("mounts__volume_name", flat=True)
    return sorted(set(names), key=str.lower)


def job_log_total(job_id: int) -> int:
    """Bytes the job logged, including what was cut."""
    return JobLogChunk.objects.total(job_id)


def job_log_text(job_id: int) -> str:
    """The kept log (head, a note of what was cut, tail)."""
    return JobLogChunk.objects.text(job_id)


def job_log_page(job_id: int, offset: int, limit: int | None = 64 * 1024) -> dict:
    """About `limit` bytes of kept log from byte `offset` (see JobLogQuerySet.page)."""
    return JobLogChunk.objects.page(job_id, offset, limit)


def job_mounts(job: Job) -> list:
    return list(job.mounts.select_related("volume"))


def workspace_members(workspace: Workspace):
    """The users who are members of the workspace, by user name."""
    return get_user_model().objects.filter(memberships__workspace=workspace).order_by("username")


def workspace_memberships(workspace: Workspace) -> list[Membership]:
    return list(Membership.objects.filter(workspace=workspace).select_related("user").order_by("user__username"))


def storages_for_workspace(workspace: Workspace) -> list[ObjectStorage]:
    """The workspace's storages, each with `volume_count` and `location` (a label without secrets)."""
    from .storage.factory import storage_url_label

    storages = list(ObjectStorage.objects.filter(workspace=workspace).annotate(volume_count=Count("volumes")))
    for storage in storages:
        storage.location = storage_url_label(storage.kind, storage.config)
    return storages


def storage_in_workspace(workspace: Workspace, pk) -> ObjectStorage | None:
    return ObjectStorage.objects.filter(workspace=workspace, pk=pk).first()


def storage_get(workspace: Workspace, pk) -> ObjectStorage:
    """One of the workspace's storages, or NotFound (API and dashboard alike)."""
    storage = storage_in_workspace(workspace, pk)
    if storage is None:
        raise NotFound(f"storage {pk} not found in workspace {workspace.pk!r}")
    return storage


def tokens_of(user):
    return ApiToken.objects.filter(user=user)


def workers_for_workspace(workspace) -> list[dict]:
    """The workers that serve this workspace (every Celery worker, and the agents that claimed its jobs),
    newest heartbeat first, each with its running job (only this workspace's; others show as busy)."""
    from datetime import timedelta

    from django.utils import timezone

    from .models import Job, WorkerHeartbeat
    from .services.workers import HEARTBEAT_SECONDS

    silent_after = timedelta(seconds=max(4 * HEARTBEAT_SECONDS, 3 * conf.get("LEASE_RENEW_INTERVAL")))
    rows = [w for w in WorkerHeartbeat.objects.order_by("-last_seen", "name")
            if w.kind == WorkerHeartbeat.Kind.CELERY or workspace.pk in (w.workspaces or [])]
    running: dict[str, list] = {}
    for job in Job.objects.filter(worker__in=[w.name for w in rows],
                                  status__in=[Job.Status.RUNNING, Job.Status.WAITING]).order_by("pk"):
        running.setdefault(job.worker, []).append(job)
    now = timezone.now()
    return [{
        "worker": w,
        "silent": now - w.last_seen > silent_after,
        "jobs": [j for j in running.get(w.name, []) if j.workspace_id == workspace.pk],
        "busy_elsewhere": any(j.workspace_id != workspace.pk for j in running.get(w.name, [])),
    } for w in rows]
