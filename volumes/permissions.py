"""Who may do what with a volume. The only module that speaks django-guardian.

Rules (README, Policies > Permissions): workspace admins always have full access; the owner has full access;
shares to users or groups give `read` (read-only) or `write` (read-write), and a read plus a
write share give write; a volume with no shares is open (read-write) to every member.
Delete: owner, writers, admins. Share: owner and admins. Non-members see nothing (404).
Each refusal is worded once here, so the API, the dashboard, the CLI, services, jobs and agents say the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q
from guardian.core import ObjectPermissionChecker
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from .exceptions import NotFound, PermissionDenied
from .models import Job, Membership, Volume, Workspace

READ, WRITE = "read", "write"
PERMS = {READ: "read_volume", WRITE: "write_volume"}
NEEDS = ("see", "write", "delete", "share", "quota")


@dataclass(frozen=True)
class Access:
    """A caller's rights on one volume."""

    level: str | None  # WRITE, READ or None
    is_admin: bool = False
    is_owner: bool = False

    @property
    def can_see(self) -> bool:
        return self.level is not None

    @property
    def can_write(self) -> bool:
        return self.level == WRITE

    @property
    def can_delete(self) -> bool:
        return self.level == WRITE

    @property
    def can_share(self) -> bool:
        return self.is_admin or self.is_owner


def role(user, workspace: Workspace | str) -> str | None:
    """'admin', 'member' or None for a non-member (or an anonymous user)."""
    if user is None or not user.is_authenticated:
        return None
    ws_id = workspace.pk if isinstance(workspace, Workspace) else workspace
    return Membership.objects.filter(workspace_id=ws_id, user=user).values_list("role", flat=True).first()


def require_member(user, workspace: Workspace | str) -> str:
    """The user's role; PermissionDenied for a non-member acting as themselves (a job whose user was removed)."""
    user_role = role(user, workspace)
    if user_role is None:
        raise PermissionDenied(_not_a_member(user, workspace))
    return user_role


def not_a_member(who, workspace: Workspace | str) -> NotFound:
    """The refusal for acting on someone outside the workspace. `who` is a user, or only an id where their
    name is not the caller's to learn."""
    return NotFound(_not_a_member(who, workspace))


def _not_a_member(who, workspace: Workspace | str) -> str:
    name = who.get_username() if hasattr(who, "get_username") else who
    ws_id = workspace.pk if isinstance(workspace, Workspace) else workspace
    return f"user {name!r} is not a member of workspace {ws_id!r}"


def workspace_for(user, workspace_id: str) -> tuple[Workspace, str]:
    """The workspace and the caller's role; NotFound for non-members so names never leak."""
    if isinstance(workspace_id, str) and "\x00" in workspace_id:  # no id holds a NUL, and PostgreSQL refuses one even in a lookup
        raise NotFound(f"workspace {workspace_id!r} not found")
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    user_role = role(user, workspace_id) if workspace else None
    if user_role is None:
        raise NotFound(f"workspace {workspace_id!r} not found")
    return workspace, user_role


def require_admin(user, workspace: Workspace) -> None:
    if role(user, workspace) != Membership.Role.ADMIN:
        raise PermissionDenied("only admins of this workspace can do this; ask one of them")


def _has_shares(volume_ids: Iterable[int]) -> set[int]:
    ct = ContentType.objects.get_for_model(Volume)
    keys = [str(i) for i in volume_ids]
    shared = set(
        UserObjectPermission.objects.filter(content_type=ct, object_pk__in=keys).values_list("object_pk", flat=True)
    )
    shared |= set(
        GroupObjectPermission.objects.filter(content_type=ct, object_pk__in=keys).values_list("object_pk", flat=True)
    )
    return {int(k) for k in shared}


def _level(user, volume: Volume, user_role: str | None, shared: bool, checker: ObjectPermissionChecker) -> Access:
    if user_role is None:
        return Access(None)
    is_admin = user_role == Membership.Role.ADMIN
    is_owner = volume.owner_id is not None and volume.owner_id == user.pk
    if is_admin or is_owner or not shared:
        return Access(WRITE, is_admin, is_owner)
    perms = set(checker.get_perms(volume))
    if PERMS[WRITE] in perms:
        return Access(WRITE)
    if PERMS[READ] in perms:
        return Access(READ)
    return Access(None)


def access(user, volume: Volume) -> Access:
    user_role = role(user, volume.workspace_id)
    if user_role is None:
        return Access(None)
    return _level(user, volume, user_role, bool(_has_shares([volume.pk])), ObjectPermissionChecker(user))


def access_many(user, volumes: list[Volume]) -> dict[int, Access]:
    """Access for a list of volumes of one workspace, with permissions prefetched."""
    if not volumes:
        return {}
    user_role = role(user, volumes[0].workspace_id)
    if user_role is None:
        return {v.pk: Access(None) for v in volumes}
    shared = _has_shares(v.pk for v in volumes)
    checker = ObjectPermissionChecker(user)
    checker.prefetch_perms(volumes)
    return {v.pk: _level(user, v, user_role, v.pk in shared, checker) for v in volumes}


def volume_for(user, workspace_id: str, name: str, need: str = "see") -> tuple[Volume, Access]:
    """The named volume and the caller's access; NotFound for non-members and missing volumes,
    PermissionDenied for members without a share on a shared volume or without the `need`ed right."""
    assert need in NEEDS, need
    workspace, _ = workspace_for(user, workspace_id)
    if "\x00" in name:  # no name holds a NUL, and PostgreSQL refuses one even in a lookup
        raise NotFound.volume(name, workspace_id)
    volume = Volume.objects.named(workspace, name).select_related("owner").first()
    if volume is None:
        raise NotFound.volume(name, workspace_id)
    rights = require_share(user, volume)
    require(rights, volume, need)
    return volume, rights


def require_share(user, volume: Volume) -> Access:
    """The user's access to a volume of their workspace; PermissionDenied if they may not even see it."""
    rights = access(user, volume)
    if not rights.can_see:
        raise PermissionDenied(f"user {user.get_username()!r} has no share on volume {volume.name!r}; ask its "
                               "owner or a workspace admin to share it")
    return rights


def require(rights: Access, volume: Volume, need: str) -> None:
    """PermissionDenied unless `rights` allow `need` on `volume`: one wording for the API, the
    dashboard and the CLI."""
    if need == "write" and not rights.can_write:
        raise PermissionDenied(
            f"you have read-only access to volume {volume.name!r}; ask its owner or an admin for write access"
        )
    if need == "delete" and not rights.can_delete:
        raise PermissionDenied(f"you may not delete volume {volume.name!r}; its owner, writers and admins can")
    if need == "quota" and not rights.can_share:
        raise PermissionDenied(f"only the owner of volume {volume.name!r} and workspace admins can change its size "
                               "limit")
    if need == "share" and not rights.can_share:
        raise PermissionDenied(f"only the owner of volume {volume.name!r} and workspace admins can share it")


# Jobs -----------------------------------------------------------------------------------------

def visible_jobs(user, workspace: Workspace):
    """Admins see every job of the workspace; members see their own."""
    qs = Job.objects.filter(workspace=workspace)
    if role(user, workspace) != Membership.Role.ADMIN:
        qs = qs.filter(user=user)
    return qs


def job_for(user, workspace: Workspace, job_id: int) -> Job:
    """A job the caller may see, or NotFound (a job of someone else is as good as missing)."""
    job = visible_jobs(user, workspace).filter(pk=job_id).select_related("user").first()
    if job is None:
        raise NotFound(f"job {job_id} not found in workspace {workspace.pk!r}")
    return job


# Agents ---------------------------------------------------------------------------------------

def can_run_agents(user, workspace: Workspace) -> bool:
    """Workspace admins, and members with the workspace's agent role, may claim and run jobs."""
    if user is None or not user.is_authenticated:
        return False
    row = Membership.objects.filter(workspace=workspace, user=user).values("role", "runs_agents").first()
    return row is not None and (row["role"] == Membership.Role.ADMIN or row["runs_agents"])


def require_agent(user, workspace: Workspace) -> None:
    if not can_run_agents(user, workspace):
        raise PermissionDenied(
            f"only admins of workspace {workspace.id!r} and members with its agent role can run agent workers; "
            f"use a token of such a user, or ask an admin: manage.py agent_role {workspace.id} USERNAME"
        )


_RANK = {None: 0, READ: 1, WRITE: 2}


def agent_covers(agent_user, job_user, volume: Volume) -> bool:
    """Whether an agent's user may use the volume at least as the job's user may (an agent uses only what both
    may)."""
    return _RANK[access(agent_user, volume).level] >= _RANK[access(job_user, volume).level]


def require_agent_mount(agent_user, volume: Volume, read_only: bool) -> None:
    """PermissionDenied unless the agent's user may mount the volume as the prepared job does."""
    if _RANK[access(agent_user, volume).level] < _RANK[READ if read_only else WRITE]:
        raise PermissionDenied(
            f"the agent's user {agent_user} may not {'read' if read_only else 'write'} volume {volume.name!r}, "
            f"which the job needs; an agent uses only what both the job's user and its own user may"
        )


# Trash ----------------------------------------------------------------------------------------

def trash_scope(user, workspace: Workspace | str) -> Q:
    """The trashed volumes a user may restore or purge: admins all; others their own and those they deleted."""
    if role(user, workspace) == Membership.Role.ADMIN:
        return Q()
    return Q(owner=user) | Q(trashed_by=user)


def require_trash_rights(user, volume: Volume) -> None:
    if not Volume.all_objects.filter(trash_scope(user, volume.workspace_id), pk=volume.pk).exists():
        raise PermissionDenied(f"only the owner of volume {volume.name!r}, who deleted it, and admins can "
                               "restore it or delete it for good")


# Accounts -------------------------------------------------------------------------------------

def sees_storage(user, workspace_id: str | None) -> bool:
    """Workspace admins and staff see storage details in errors."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if user.is_staff or user.is_superuser:
        return True
    if not workspace_id or "\x00" in workspace_id:
        return False
    return role(user, workspace_id) == Membership.Role.ADMIN


def can_get_password_link(workspace: Workspace, user) -> bool:
    """A set-password link is for someone who never set a password and belongs to this workspace
    only: an admin here must not be able to take over an account that other workspaces use."""
    if user.has_usable_password() or user.is_staff or user.is_superuser:
        return False
    return not Membership.objects.filter(user=user).exclude(workspace=workspace).exists()


# Shares ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Share:
    kind: str  # "user" or "group"
    name: str
    id: int
    access: str


def shares_of(volume: Volume) -> list[Share]:
    ct = ContentType.objects.get_for_model(Volume)
    best: dict[tuple[str, int], Share] = {}
    rows = [
        ("user", p.user_id, p.user.username, p.permission.codename)
        for p in UserObjectPermission.objects.filter(content_type=ct, object_pk=str(volume.pk)).select_related(
            "user", "permission"
        )
    ] + [
        ("group", p.group_id, p.group.name, p.permission.codename)
        for p in GroupObjectPermission.objects.filter(content_type=ct, object_pk=str(volume.pk)).select_related(
            "group", "permission"
        )
    ]
    for kind, pk, name, codename in rows:
        level = WRITE if codename == PERMS[WRITE] else READ
        current = best.get((kind, pk))
        if current is None or level == WRITE:
            best[(kind, pk)] = Share(kind, name, pk, level)
    return sorted(best.values(), key=lambda s: (s.kind, s.name.lower()))


def set_share(volume: Volume, target, level: str | None) -> None:
    """Give a user or group `read` or `write` on the volume, or remove their share (level None)."""
    for perm in PERMS.values():
        remove_perm(f"volumes.{perm}", target, volume)
    if level is not None:
        assign_perm(f"volumes.{PERMS[level]}", target, volume)


def groups_in_workspace(workspace: Workspace):
    return Group.objects.filter(user__memberships__workspace=workspace).distinct().order_by("name")
