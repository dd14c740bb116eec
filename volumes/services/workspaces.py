"""Writes for workspaces, their members and storages."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from ..models import Membership, ObjectStorage, Workspace
from ..storage.factory import parse_storage_url


def user_ensure(username: str) -> "object":
    """The user with this name, created (without a usable password) if missing."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


@transaction.atomic
def workspace_ensure(
    workspace_id: str,
    name: str | None = None,
    admins: list[str] = (),
    members: list[str] = (),
    storage_url: str | None = None,
    select_volume_storage: bool = True,
) -> Workspace:
    """Create or update a workspace idempotently, with its members and primary storage."""
    workspace, _ = Workspace.objects.get_or_create(id=workspace_id, defaults={"name": name or workspace_id})
    workspace.full_clean(validate_unique=False)
    if name and workspace.name != name:
        workspace.name = name
        workspace.save(update_fields=["name"])
    for role, usernames in ((Membership.Role.ADMIN, admins), (Membership.Role.MEMBER, members)):
        for username in usernames:
            user = user_ensure(username)
            Membership.objects.update_or_create(workspace=workspace, user=user, defaults={"role": role})
    if storage_url is not None:
        kind, config = parse_storage_url(storage_url)
        primary = ObjectStorage.objects.filter(workspace=workspace, is_primary=True).first()
        if primary is None:
            storage_check(workspace, kind, config, unconfined=True)
            primary = ObjectStorage.objects.create(
                workspace=workspace, name="primary", kind=kind, config=config, is_primary=True
            )
        elif (primary.kind, primary.config) != (kind, config):
            _refuse_moving_volumes(primary, kind, config, how=(
                "move or delete the volumes first, or add another storage (Settings > Storage or the API) and "
                "select it as the volume storage"))
            storage_check(workspace, kind, config, unconfined=True)
            primary.kind, primary.config = kind, config
            primary.save(update_fields=["kind", "config"])
        if select_volume_storage and workspace.volume_storage_id != primary.pk:
            workspace.volume_storage = primary
            workspace.save(update_fields=["volume_storage"])
    return workspace


def storage_check(workspace: Workspace, kind: str, config: dict, unconfined: bool) -> None:
    """The rules of this installation, then a live check (reach, credentials, bucket, write, delete);
    StorageRefused or StorageCheckFailed saying what failed."""
    from ..storage.policy import storage_probe

    storage_probe(kind, config, workspace.pk, unconfined=unconfined)


def _refuse_moving_volumes(storage: ObjectStorage, kind: str, config: dict, how: str) -> None:
    """Conflict if the change would move where `storage`'s objects are while volumes live there."""
    from ..exceptions import Conflict
    from ..storage.policy import location

    if location(storage.kind, storage.config) == location(kind, config):
        return
    count = storage.volumes.count()
    if count:
        raise Conflict(
            f"storage {storage.name!r} holds {count} volume{'s' if count != 1 else ''}, so its kind, bucket, "
            f"container, folder or prefix cannot change (their data would stay behind); {how}. "
            "Endpoints and credentials can change."
        )


def agent_role_grant(workspace: Workspace, user) -> None:
    """Let a member run agent workers for this workspace (and only this one)."""
    from ..permissions import not_a_member

    if not Membership.objects.filter(workspace=workspace, user=user).update(runs_agents=True):
        raise not_a_member(user, workspace)


def agent_role_revoke(workspace: Workspace, user) -> None:
    """Take the agent role away; the jobs its agents already claimed keep running until they finish."""
    Membership.objects.filter(workspace=workspace, user=user).update(runs_agents=False)


def agent_role_holders(workspace: Workspace) -> list[str]:
    return sorted(Membership.objects.filter(workspace=workspace, runs_agents=True)
                  .values_list("user__username", flat=True))


def membership_remove(workspace: Workspace, user) -> None:
    """Remove a member; their queued jobs in the workspace are cancelled (see `cancel_jobs_of_removed_member`)."""
    Membership.objects.filter(workspace=workspace, user=user).delete()


def cancel_jobs_of_removed_member(workspace_id: str, user_id: int) -> int:
    """A removed member's queued jobs never start: cancel them (running ones keep the rights they started with)."""
    from django.db.models.functions import Now

    from ..models import Job

    return Job.objects.filter(workspace_id=workspace_id, user_id=user_id, status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, cancel_requested=True, finished_at=Now(),
        error="cancelled: its user is no longer a member of the workspace",
    )


def storage_save(workspace: Workspace, name: str, kind: str, config: dict, is_primary: bool,
                 storage: ObjectStorage | None = None, *, user=None) -> ObjectStorage:
    """Create or update one of the workspace's object storages (at most one is primary).

    The settings are checked first (the installation's rules for `user`, then a live write and
    delete); nothing is saved if that fails. The check runs outside the transaction: it is slow."""
    from ..exceptions import Conflict

    if ObjectStorage.objects.filter(workspace=workspace, name=name).exclude(pk=getattr(storage, "pk", None)).exists():
        raise Conflict(f"a storage named {name!r} already exists in this workspace; pick another name")
    if storage is not None:
        _refuse_moving_volumes(storage, kind, config, how="add a new storage instead")
    unchanged = storage is not None and (storage.kind, storage.config) == (kind, config)
    if not unchanged:
        storage_check(workspace, kind, config, unconfined=bool(getattr(user, "is_superuser", False)))
    with transaction.atomic():
        if storage is not None:
            current = ObjectStorage.objects.select_for_update().get(pk=storage.pk)
            _refuse_moving_volumes(current, kind, config, how="add a new storage instead")
        if is_primary:
            ObjectStorage.objects.filter(workspace=workspace, is_primary=True).exclude(
                pk=getattr(storage, "pk", None)
            ).update(is_primary=False)
        storage = storage or ObjectStorage(workspace=workspace)
        storage.name, storage.kind, storage.config, storage.is_primary = name, kind, config, is_primary
        storage.save()
    return storage


def storage_delete(storage: ObjectStorage) -> None:
    """Remove a storage no volume lives in (its data is left untouched)."""
    from ..exceptions import Conflict

    count = storage.volumes.count()
    if count:
        raise Conflict(
            f"storage {storage.name!r} holds {count} volume{'s' if count != 1 else ''}; delete them first"
        )
    storage.delete()


def volume_storage_select(workspace: Workspace, storage: ObjectStorage | None) -> None:
    """Pick where new volumes of the workspace live (None: jobs with volume annotations fail)."""
    if storage is not None and storage.workspace_id != workspace.pk:
        from ..exceptions import NotFound

        raise NotFound(f"storage {storage.name!r} is not in workspace {workspace.id!r}")
    workspace.volume_storage = storage
    workspace.save(update_fields=["volume_storage"])
