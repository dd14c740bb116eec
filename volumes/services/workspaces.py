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
            primary = ObjectStorage.objects.create(
                workspace=workspace, name="primary", kind=kind, config=config, is_primary=True
            )
        elif (primary.kind, primary.config) != (kind, config):
            primary.kind, primary.config = kind, config
            primary.save(update_fields=["kind", "config"])
        if select_volume_storage and workspace.volume_storage_id != primary.pk:
            workspace.volume_storage = primary
            workspace.save(update_fields=["volume_storage"])
    return workspace


def membership_role(workspace: Workspace, user) -> str | None:
    return Membership.objects.filter(workspace=workspace, user=user).values_list("role", flat=True).first()


@transaction.atomic
def storage_save(workspace: Workspace, name: str, kind: str, config: dict, is_primary: bool,
                 storage: ObjectStorage | None = None) -> ObjectStorage:
    """Create or update one of the workspace's object storages (at most one is primary)."""
    from ..exceptions import Conflict

    if ObjectStorage.objects.filter(workspace=workspace, name=name).exclude(pk=getattr(storage, "pk", None)).exists():
        raise Conflict(f"a storage named {name!r} already exists in this workspace; pick another name")
    if storage is not None and storage.kind != kind and storage.volumes.exists():
        raise Conflict(
            f"storage {storage.name!r} holds volumes, so its kind cannot change; add a new storage instead"
        )
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
