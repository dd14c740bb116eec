"""Writes for volumes: create (with edition limits), duplicate, delete (to the trash), restore, purge, prune
history, size caps."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

from django.db.models.functions import Now
from django.utils import timezone

from django.db import IntegrityError as DbIntegrityError
from django.db import transaction

from .. import conf
from ..annotations import validate_volume_name
from ..exceptions import (Conflict, InvalidName, InvalidSize, LimitExceeded, NotFound,
                          StorageNotConfigured, VolumeInTrash)
from ..models import Volume, VolumeCommit, Workspace

# A trashed volume whose purge has begun: no longer restorable (its objects may be half gone).
PURGING = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


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
    # Volumes in the trash count: they still hold their storage and can be restored.
    if limit is not None and Volume.all_objects.filter(workspace=workspace).count() >= limit:
        raise LimitExceeded(
            f"workspace {workspace.id!r} already has {limit} volumes, the limit of the {conf.edition()} edition; "
            "delete a volume you no longer need and empty it from the Trash (or upgrade to the enterprise edition)"
        )
    existing = Volume.all_objects.named(workspace, name).first()
    if existing is not None and existing.trashed_at is not None:
        raise in_trash(existing)
    if existing is not None:
        raise _name_taken(existing, name, owner)
    try:
        with transaction.atomic():
            return Volume.objects.create(
                workspace=workspace, name=name, owner=owner, storage_id=workspace.volume_storage_id
            )
    except DbIntegrityError as exc:
        raise Conflict(f"a volume named {name!r} already exists in this workspace (names ignore case)") from exc


def _name_taken(existing: Volume, name: str, user) -> Conflict:
    from ..permissions import access

    if user is not None and not access(user, existing).can_see:
        holder = existing.owner.username if existing.owner else "a workspace admin"
        return Conflict(f"a volume named {existing.name!r} already exists in this workspace but is not shared "
                        f"with you; ask its owner ({holder}) or a workspace admin for access, or pick another name")
    return Conflict(f"a volume named {name!r} already exists in this workspace (names ignore case)")


def in_trash(volume: Volume) -> VolumeInTrash:
    return VolumeInTrash(
        f"volume {volume.name!r} is in the workspace's trash; an admin or its owner can restore it under "
        "Trash (or `volume trash restore`), or delete it for good to use the name again"
    )


def trash_days() -> float:
    return float(conf.get("TRASH_DAYS"))


def volume_delete(volume: Volume, user=None) -> None:
    """Move a volume to the workspace's trash (VOLUMES_TRASH_DAYS); refused while it is leased.

    Takes the lease first so no job holds it; trashing releases that lease in the same update, and
    no job can lease a trashed volume (jobs, lists and lookups see only live volumes). Its files,
    history and name stay until it is restored or purged."""
    from ..engine import leases
    from ..exceptions import LeaseLost

    lease = _lease_or_refuse(volume, user, "deleted")
    moved = Volume.objects.filter(pk=volume.pk, lease_token=lease.token, lease_expires_at__gt=Now()).update(
        trashed_at=Now(), trashed_by=user if getattr(user, "pk", None) else None,
        lease_holder="", lease_job=None, lease_expires_at=None,
    )
    if moved != 1:
        leases.release(lease)
        raise LeaseLost(f"volume {volume.name!r} was taken by another holder while deleting; try again")


def _lease_or_refuse(volume: Volume, user, what: str):
    from ..engine import leases
    from ..exceptions import LeaseHeld

    lease = leases.try_acquire(volume.pk, f"deleting ({getattr(user, 'username', 'system')})")
    if lease is None:
        holder = leases.current_holder(volume.pk)
        who = holder.describe() if holder else "a job"
        raise LeaseHeld(
            f"volume {volume.name!r} is in use by {who} and cannot be {what} now; "
            "wait for the job to finish, then delete it",
            holder=who,
        )
    return lease


def trash_list(user, workspace: Workspace) -> list[Volume]:
    """The volumes in the workspace's trash the user may restore or purge (admins: all; others: their own
    and those they deleted), newest first, with `purge_at` set on each."""
    from ..permissions import trash_scope

    qs = (Volume.all_objects.filter(trash_scope(user, workspace), workspace=workspace, trashed_at__isnull=False)
          .exclude(trashed_at=PURGING))
    rows = list(qs.select_related("owner", "trashed_by").order_by("-trashed_at", "name"))
    for volume in rows:
        volume.purge_at = volume.trashed_at + timedelta(days=trash_days())
    return rows


def trashed_volume_for(user, workspace_id: str, name: str) -> Volume:
    """A volume in the trash the user may restore or purge; NotFound or PermissionDenied otherwise."""
    from ..permissions import require_trash_rights, workspace_for

    workspace, _ = workspace_for(user, workspace_id)
    volume = (Volume.all_objects.named(workspace, name).filter(trashed_at__isnull=False)
              .exclude(trashed_at=PURGING).first())
    if volume is None:
        raise NotFound(f"no volume {name!r} in the trash of workspace {workspace_id!r}")
    require_trash_rights(user, volume)
    return volume


def volume_restore(volume: Volume, user=None) -> Volume:
    """Bring a trashed volume back with all its files and history (nothing was removed from storage)."""
    cutoff = timezone.now() - timedelta(days=trash_days())
    restored = Volume.all_objects.filter(pk=volume.pk, trashed_at__gt=cutoff).update(trashed_at=None, trashed_by=None)
    if restored != 1:
        raise NotFound(f"volume {volume.name!r} is no longer in the trash (restored, or past the "
                       f"{trash_days():g} days it keeps deleted volumes)")
    return Volume.objects.get(pk=volume.pk)


def volume_purge(volume: Volume, user=None) -> int:
    """Delete a trashed volume for good: every object under its prefix, its history and its row.

    Marks it as purging first, so a restore racing it cannot bring back a half-deleted volume.
    Returns the objects deleted. A purge that fails midway is finished by the next GC run. Refused while
    readers that started before the delete still have pins on it (a trashed volume takes no new pins)."""
    from ..engine import pins
    from ..storage.factory import store_for_volume

    readers = pins.live(volume.pk).count()
    if readers:
        raise Conflict(
            f"volume {volume.name!r} is in the trash, but {readers} job{'s' if readers != 1 else ''} that started "
            f"before it was deleted still read{'s' if readers == 1 else ''} it; delete it for good once "
            f"{'they finish' if readers != 1 else 'it finishes'} (GC purges it after the retention anyway)"
        )
    marked = Volume.all_objects.filter(pk=volume.pk, trashed_at__isnull=False).update(trashed_at=PURGING)
    if marked != 1:
        raise Conflict(f"volume {volume.name!r} is not in the trash; delete it first")
    store, prefix = store_for_volume(volume)
    removed = store.delete_prefix(prefix)
    Volume.all_objects.filter(pk=volume.pk).delete()
    return removed


def trash_purge_expired() -> int:
    """Purge every trashed volume past VOLUMES_TRASH_DAYS (and purges that stopped midway); GC runs this."""
    cutoff = timezone.now() - timedelta(days=trash_days())
    removed = 0
    for volume in Volume.all_objects.filter(trashed_at__lte=cutoff).select_related("storage"):
        try:
            removed += volume_purge(volume)
        except Conflict:  # a reader still pins it: the next run purges it
            continue
    return removed


def volume_delete_now(volume: Volume, user=None) -> int:
    """Trash a live volume and purge it at once (the old immediate delete); returns the objects deleted."""
    volume_delete(volume, user=user)
    return volume_purge(Volume.all_objects.get(pk=volume.pk), user=user)


def volume_prune_history(volume: Volume, keep: int = 1, user=None) -> int:
    """Drop all but the newest `keep` generations (at least the current one) from the volume's history;
    returns how many were dropped. Their storage counts against caps no more; GC deletes their objects
    (after VOLUMES_GC_GRACE). Old generations can no longer be restored."""
    if keep < 1:
        raise LimitExceeded("keep at least 1 generation (the current one)")
    volume.refresh_from_db(fields=["generation"])
    newest = list(VolumeCommit.objects.filter(volume=volume).order_by("-generation")
                  .values_list("generation", flat=True)[:keep])
    dropped, _ = (VolumeCommit.objects.filter(volume=volume).exclude(generation__in=newest)
                  .exclude(generation=volume.generation).delete())
    return dropped


def volume_duplicate(source: Volume, name: str, user, generation: int | None = None) -> Volume:
    """A new volume `name`, owned by `user`, with the files of `source` at `generation` (default: its current
    one), committed as its generation 1 with a note of where it came from.

    The caller checked that `user` may read `source`; creating it follows every rule of `volume_create`.
    The source is read at a committed generation (immutable) without its lease, so a job holding it goes
    on; its blobs are copied inside the storage, never through this process (unless the copy lands in
    another storage than the source's). A copy that fails leaves no volume behind."""
    from ..engine import leases, pins
    from ..engine.commits import Change
    from ..engine.manifest import Manifest
    from ..engine.remote import DirectRemote
    from .files import manifest_of

    who = getattr(user, "username", "system")
    # A reader's pin on the current generation: GC keeps all it needs while we copy (an older generation
    # is kept by its history row, and GC waits VOLUMES_GC_GRACE before deleting what a prune freed).
    pin = pins.pin(source.pk, f"duplicating to {name} ({who})")
    try:
        generation = pin.generation if generation is None else generation
        old = manifest_of(source, generation)  # NotFound for a generation never made or pruned
        with transaction.atomic():  # nobody can take the new volume's lease before we hold it
            volume = volume_create(source.workspace, name, owner=user)
            lease = leases.try_acquire(volume.pk, f"duplicating from {source.name} ({who})")
        remote = DirectRemote(user_id=getattr(user, "pk", None))
        try:
            _copy_blobs(source, generation, volume, sorted(old.hashes()),
                        lambda: (leases.renew(lease), pins.renew(pin)))
            remote.commit_changes([Change(lease, 0, Manifest(), Manifest(dict(old.entries)),
                                          message=f"duplicated from {source.name} generation {generation} by {who}")])
        except BaseException:
            leases.release(lease)
            _discard(volume)
            raise
        leases.release(lease)
    finally:
        pins.release(pin)
    return Volume.objects.get(pk=volume.pk)


def _discard(volume: Volume) -> None:
    """Remove a duplicate that failed midway: its row and whatever it had copied."""
    Volume.all_objects.filter(pk=volume.pk).update(trashed_at=Now())
    volume_purge(Volume.all_objects.get(pk=volume.pk))


def _copy_blobs(source: Volume, generation: int, target: Volume, digests: list[str], renew) -> None:
    """Copy every blob of `digests` from the source's prefix to the target's, inside the storage when both
    live in the same one; `renew` keeps the target's lease while it runs."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from ..engine.retry import RetryingStore
    from ..exceptions import BlobMissing
    from ..storage.factory import store_for_volume
    from ..storage.keys import blob_key

    (src_store, src), (dst_store, dst) = store_for_volume(source), store_for_volume(target)
    src_store, dst_store = RetryingStore(src_store), RetryingStore(dst_store)

    def one(digest: str) -> None:
        if source.storage_id == target.storage_id:
            src_store.copy(blob_key(src, digest), blob_key(dst, digest))
        else:
            _transfer(src_store, dst_store, blob_key(src, digest), blob_key(dst, digest), digest)

    threads = 1 if dst_store.kind == "filesystem" else conf.get("TRANSFER_THREADS")
    renewed = time.monotonic()
    try:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(one, digests):
                if time.monotonic() - renewed > conf.get("LEASE_RENEW_INTERVAL"):
                    renew()
                    renewed = time.monotonic()
    except BlobMissing as exc:
        raise NotFound(f"generation {generation} of volume {source.name!r} cannot be duplicated: a file it needs "
                       f"is missing from storage ({exc}); check the volume with `volume fsck {source.name}`, or "
                       "duplicate another generation") from exc


def _transfer(src_store, dst_store, src_key: str, dst_key: str, digest: str) -> None:
    """A blob from one storage to another, through a temporary file, checked against its digest."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="duplicate-")
    os.close(fd)
    try:
        src_store.get_file(src_key, tmp)
        dst_store.put_file(dst_key, tmp, sha256=digest, create_only=True)
    finally:
        os.unlink(tmp)


UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
NO_LIMIT = ("", "none", "no limit", "unlimited")
MAX_SIZE = 2**63 - 1  # what the database column holds


def parse_size(text: str) -> int | None:
    """Bytes from a size as people write it: "10 GB" (10**9), "1.5 GiB" (2**30 based), "500MB", "2048";
    None for no limit ("", "none"). InvalidSize, saying what is accepted, for anything else."""
    import re
    from decimal import Decimal, InvalidOperation

    clean = text.strip().lower().replace(",", "").replace("_", "")
    if clean in NO_LIMIT:
        return None
    match = re.fullmatch(r"(-?[0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)", clean)
    if match is None or match[2] not in UNITS:
        raise InvalidSize(f"{text.strip()[:40]!r} is not a size; write it like 10 GB, 500 MB, 1.5 GiB or a number "
                          "of bytes (or none for no limit)")
    try:
        size = Decimal(match[1]) * UNITS[match[2]]
    except InvalidOperation as exc:
        raise InvalidSize(f"{text.strip()[:40]!r} is not a size; write it like 10 GB") from exc
    if size < 0:
        raise InvalidSize("a size limit must be 0 or more bytes (or none for no limit)")
    if size > MAX_SIZE:
        raise InvalidSize(f"{text.strip()[:40]!r} is too large for a size limit")
    if size != size.to_integral_value():
        raise InvalidSize(f"{text.strip()[:40]!r} is not a whole number of bytes")
    return int(size)


def volume_set_quota(volume: Volume, max_size_bytes: int | None, user=None) -> Volume:
    """Set the volume's own cap on its storage (files and kept history), or clear it (None). A cap below
    what the volume stores now is allowed: nothing is deleted, and its next commit that adds data is
    refused until it fits. The caller checked that `user` may (owner or admin)."""
    if max_size_bytes is not None and not 0 <= max_size_bytes <= MAX_SIZE:
        raise InvalidSize("a size limit must be 0 or more bytes (or none for no limit)")
    Volume.objects.filter(pk=volume.pk).update(max_size_bytes=max_size_bytes)
    volume.max_size_bytes = max_size_bytes
    return volume
