"""Writes for volumes: create (with edition limits), delete."""
from __future__ import annotations

from django.db import IntegrityError as DbIntegrityError
from django.db import transaction

from .. import conf
from ..annotations import validate_volume_name
from ..exceptions import Conflict, InvalidName, LimitExceeded, StorageNotConfigured
from ..models import Volume, Workspace


def storage_not_configured(workspace: Workspace) -> StorageNotConfigured:
    return StorageNotConfigured(
        f"workspace {workspace.id!r} has no volume storage selected; an admin must pick one under "
        "Settings > Storage > Volume storage (or run `manage.py create_workspace "
        f"{workspace.id} --storage URL`)"
    )


@transaction.atomic
def volume_create(workspace: Workspace, name: str, owner=None) -> Volume:
    """Create an empty volume in the workspace's volume storage, within the edition's limits."""
    try:
        validate_volume_name(name)
    except Exception as exc:
        raise InvalidName(f"invalid volume name: {exc}") from exc
    if workspace.volume_storage_id is None:
        raise storage_not_configured(workspace)
    # Lock the workspace row so two creates cannot both take the last free slot.
    Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
    limit = conf.max_volumes_per_workspace()
    if limit is not None and Volume.objects.filter(workspace=workspace).count() >= limit:
        raise LimitExceeded(
            f"workspace {workspace.id!r} already has {limit} volumes, the limit of the {conf.edition()} edition; "
            "delete a volume you no longer need (or upgrade to the enterprise edition)"
        )
    if Volume.objects.filter(workspace=workspace, name__iexact=name).exists():
        raise Conflict(f"a volume named {name!r} already exists in this workspace (names ignore case)")
    try:
        with transaction.atomic():
            return Volume.objects.create(
                workspace=workspace, name=name, owner=owner, storage_id=workspace.volume_storage_id
            )
    except DbIntegrityError as exc:
        raise Conflict(f"a volume named {name!r} already exists in this workspace (names ignore case)") from exc


def volume_delete(volume: Volume, user=None) -> int:
    """Delete a volume and every object under its prefix; refused while it is leased.

    Takes the lease first so no job can start on it meanwhile. Returns the objects deleted."""
    from ..engine import leases
    from ..exceptions import LeaseHeld
    from ..storage.factory import store_for_storage
    from ..storage.keys import volume_prefix

    lease = leases.try_acquire(volume.pk, f"deleting ({getattr(user, 'username', 'system')})")
    if lease is None:
        holder = leases.current_holder(volume.pk)
        who = holder.describe() if holder else "a job"
        raise LeaseHeld(
            f"volume {volume.name!r} is in use by {who} and cannot be deleted now; "
            "wait for the job to finish, then delete it",
            holder=who,
        )
    try:
        removed = store_for_storage(volume.storage).delete_prefix(volume_prefix(volume.workspace_id, volume.name))
    except BaseException:
        leases.release(lease)
        raise
    volume.delete()
    return removed
