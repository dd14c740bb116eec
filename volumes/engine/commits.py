"""The one commit path of every writer: a job's push, an agent's commit, file edits, restores, duplicates.

`commit_changes` fences each change (its lease live, its token current, its volume still at its parent),
stamps its entries' generations, writes its manifest and moves every pointer in one transaction, where
the size cap and the history room are checked: all of a job's volumes or none. The refusals are worded
here once; writers may check the same rules earlier (`check_room`) to refuse before uploading.
"""
from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from django.db import transaction
from django.template.defaultfilters import filesizeformat
from django.db.models.functions import Now
from django.utils import timezone

from ..exceptions import Conflict, LeaseLost, LimitExceeded
from ..models import Volume, VolumeCommit
from ..storage.base import ObjectStore
from ..storage.keys import manifest_key
from . import history, leases, manifest_store, retention
from .faults import crash_point
from .leases import Lease
from .manifest import FILE, Entry, Manifest, diff


@dataclass(frozen=True)
class ChangeCounts:
    files_added: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    bytes_added: int = 0
    bytes_changed: int = 0
    bytes_deleted: int = 0
    blob_bytes_added: int = 0  # blobs `new` has that `base` has not: what this generation costs in storage

    @classmethod
    def between(cls, base: Manifest, new: Manifest) -> "ChangeCounts":
        # A scan hands back the base's own entry for whatever it found unchanged: all of them is no change,
        # told without comparing 100,000 entries field by field (in any order: a shared scan merges two walks).
        if new.entries is base.entries or len(new.entries) == len(base.entries) and all(
                map(operator.is_, map(base.entries.get, new.entries), new.entries.values())):
            return cls()
        added, changed, deleted = diff(base, new)
        # Only an added or changed file can bring a blob the base lacks: an unchanged one has its base's hash.
        touched = [e for e in (*added, *changed) if e.type == FILE]
        known = base.hashes() if touched else set()
        new_blobs = {e.hash: e.size for e in touched if e.hash not in known}
        return cls(
            files_added=len(added),
            files_changed=len(changed),
            files_deleted=len(deleted),
            bytes_added=sum(e.size for e in added),
            bytes_changed=sum(e.size for e in changed),
            bytes_deleted=sum(e.size for e in deleted),
            blob_bytes_added=sum(new_blobs.values()),
        )


@dataclass
class Change:
    """One volume's next generation: `manifest` in place of `base`, the manifest of generation `parent`."""

    lease: Lease
    parent: int
    base: Manifest
    manifest: Manifest
    job_id: int | None = None
    message: str = ""
    counts: ChangeCounts | None = None  # ChangeCounts.between(base, manifest), when the writer has it


def stamp(base: Manifest, manifest: Manifest, generation: int) -> None:
    """Make `manifest` generation `generation`: each entry keeps the generation that last changed it (its
    base entry's when the content is the same, else this one)."""
    manifest.generation = generation
    entries, make = manifest.entries, Entry._make  # _make: a quarter of _replace's time (10,000 new files)
    for path, entry in entries.items():
        old = base.entries.get(path)
        if old is entry:  # a scan keeps the base's entry when nothing changed: its generation with it
            continue
        gen = old.gen if old is not None and old.same_content(entry) else generation
        if entry.gen != gen:
            entries[path] = make((*entry[:7], gen))
            manifest.runs = None  # they described the entries before


StoreOf = Callable[[Lease], tuple[ObjectStore, str]]


def commit_changes(changes: list[Change], store_of: StoreOf, user_id: int | None = None) -> list[tuple[int, str]]:
    """Commit every change, all or none: each is fenced, stamped and validated before any manifest is
    written (an unreferenced manifest is harmless), then every pointer moves in one transaction under
    its lease, where the size cap and the history room are checked. `store_of(lease)` gives the store
    and prefix of the lease's volume. Returns (new generation, manifest key) per change, in order."""
    for change in changes:
        check_current(change.lease, change.parent)
        stamp(change.base, change.manifest, change.parent + 1)
        change.manifest.validate(change.base)  # never commit what a reader would refuse, whoever built it
    requests = []
    for change in changes:
        lease, parent, manifest = change.lease, change.parent, change.manifest
        store, prefix = store_of(lease)
        key = manifest_key(prefix, f"{parent + 1:08d}-{uuid.uuid4().hex[:12]}.json")
        # Only the parts that changed are new; the base generation's are stored (GC keeps them).
        known = manifest_store.part_digests(store, lease.manifest_key) if lease.manifest_key else set()
        manifest_store.write(store, key, manifest, known, change.base)
        crash_point("push.after_manifest_write")
        counts = change.counts or ChangeCounts.between(change.base, manifest)
        requests.append(CommitRequest(lease, parent, key, manifest, counts, change.job_id, change.message,
                                      base_size=change.base.size_bytes))
    generations = commit_generations(requests, user_id=user_id)
    return [(generation, request.manifest_key) for generation, request in zip(generations, requests)]


def check_current(lease: Lease, parent: int) -> None:
    """LeaseLost unless `lease` is live with the current token; Conflict once the volume left `parent`."""
    leases.check_held(lease)
    generation = Volume.objects.filter(pk=lease.volume_id).values_list("generation", flat=True).first()
    if generation != parent:
        raise _moved_on(lease, generation, parent)


def _moved_on(lease: Lease, generation: int, parent: int) -> Conflict:
    return Conflict(
        f"volume {lease.volume_name!r} moved to generation {generation} "
        f"while this change was based on {parent}; nothing was committed, retry"
    )


@dataclass(frozen=True)
class CommitRequest:
    """One volume's pointer move: to `manifest_key` (already written) from generation `parent`."""

    lease: Lease
    parent: int
    manifest_key: str
    manifest: Manifest
    counts: ChangeCounts
    job_id: int | None = None
    message: str = ""
    base_size: int | None = None  # the files of generation `parent`, bytes (None: unknown)


def commit_generation(
    lease: Lease,
    parent: int,
    manifest_key: str,
    manifest: Manifest,
    counts: ChangeCounts,
    user_id: int | None = None,
    job_id: int | None = None,
    message: str = "",
) -> int:
    """Move the pointer to `manifest_key` (already written); refused unless the lease is live,
    its token current and the volume still at `parent`. Returns the new generation. Writers commit
    through `commit_changes`."""
    request = CommitRequest(lease, parent, manifest_key, manifest, counts, job_id, message)
    return commit_generations([request], user_id=user_id)[0]


def commit_generations(requests: list[CommitRequest], user_id: int | None = None) -> list[int]:
    """Move every pointer in one transaction, each under its own fencing check: all or none.
    Returns the new generations in the order given."""
    with transaction.atomic():
        generations = [_move_pointer(request, user_id) for request in requests]
    for request, generation in zip(requests, generations):
        history.record("commit", request.lease, "ok", parent=request.parent, generation=generation)
    return generations


def _move_pointer(request: CommitRequest, user_id: int | None) -> int:
    lease, parent = request.lease, request.parent
    generation = parent + 1
    size, files = request.manifest.size_bytes, request.manifest.file_count
    moved = Volume.objects.filter(
        pk=lease.volume_id, lease_token=lease.token, lease_expires_at__gt=Now(), generation=parent
    ).update(
        generation=generation,
        manifest_key=request.manifest_key,
        size_bytes=size,
        file_count=files,
        last_used_at=Now(),
    )
    if moved != 1:
        history.record("commit", lease, "fail", parent=parent)
        row = Volume.objects.filter(pk=lease.volume_id).values("lease_token", "generation").first()
        if row is None or row["lease_token"] != lease.token or row["generation"] == parent:
            raise LeaseLost(
                f"the lease on volume {lease.volume_name!r} was lost before the commit; "
                "nothing was committed and the previous generation is intact"
            )
        raise _moved_on(lease, row["generation"], parent)
    check_room(lease.volume_id, generation, request.manifest, request.counts, request.base_size, size)
    crash_point("commit.inside_transaction")
    VolumeCommit.objects.create(
        volume_id=lease.volume_id,
        generation=generation,
        parent=parent,
        manifest_key=request.manifest_key,
        lease_token=lease.token,
        created_at=Now(),
        user_id=user_id,
        job_id=request.job_id,
        message=request.message[:300],
        size_bytes=size,
        file_count=files,
        **request.counts.__dict__,
    )
    return generation


@dataclass(frozen=True)
class _Figures:
    generation: int
    created_at: datetime
    size_bytes: int
    blob_bytes_added: int


def _stored(volume_id: int, current: int, now: datetime, new: _Figures | None = None) -> tuple[int, int]:
    """(bytes the volume's kept history holds in storage, generations kept), with `new` committed."""
    rows = [_Figures(**row) for row in VolumeCommit.objects.filter(volume_id=volume_id).values(
        "generation", "created_at", "size_bytes", "blob_bytes_added")]
    kept = retention.kept(rows + ([new] if new else []), current, now)
    return retention.stored_bytes(kept), len(kept)


def check_room(volume_id: int, generation: int, manifest: Manifest, counts: ChangeCounts,
               base_size: int | None = None, size: int | None = None) -> None:
    """Refuse (LimitExceeded) a commit of `manifest` as `generation` that grows the volume's files past its
    cap (`Volume.size_cap`), or that adds blobs while the volume's kept history would be over that cap or all
    volumes of the workspace over its quota. A change that neither grows the files nor adds blobs (a delete,
    a move) always commits. `base_size`: the files of the parent generation (read from the volume while it
    is still there). Checked inside the commit's transaction, and before uploading where it saves a transfer
    that would be refused. `size`: manifest.size_bytes, where the caller has it (100,000 entries: 3 ms each time)."""
    size = manifest.size_bytes if size is None else size
    if base_size is not None and size <= base_size and counts.blob_bytes_added <= 0:
        return
    volume = Volume.objects.select_related("workspace").only(
        "name", "generation", "size_bytes", "max_size_bytes", "workspace__max_volume_size",
        "workspace__storage_quota").get(pk=volume_id)
    if base_size is None and volume.generation == generation - 1:
        base_size = volume.size_bytes  # not committed yet: the volume's files are the parent's
    cap, quota = volume.size_cap, volume.workspace.storage_quota
    check_size(volume.name, base_size, size, cap, raise_cap(volume))
    if counts.blob_bytes_added <= 0 or (cap is None and quota is None):
        return
    now = timezone.now()
    new = _Figures(generation, now, size, counts.blob_bytes_added)
    stored, kept = _stored(volume.pk, generation, now, new)
    name = volume.name
    how = (f"Nothing was committed. Drop earlier generations with `python manage.py volume prune {name}` "
           "(or Prune history on the volume's History page; a change still needs room for itself and the "
           "generation it replaces), delete files, or ")
    if cap is not None and stored > cap:
        raise LimitExceeded(
            f"volume {name!r} would keep {size_text(stored)} in storage, over its limit of {size_text(cap)}: "
            f"{size_text(size)} of current files plus {size_text(stored - size)} "
            f"only earlier generations use ({kept - 1} kept as history). {how}{raise_cap(volume)}"
        )
    if quota is not None:
        others = 0
        for other in Volume.all_objects.filter(workspace_id=volume.workspace_id).exclude(pk=volume.pk).values(
                "pk", "generation"):
            others += _stored(other["pk"], other["generation"], now)[0]
        if others + stored > quota:
            raise LimitExceeded(
                f"the volumes of workspace {volume.workspace_id!r} would keep {size_text(others + stored)} in storage "
                f"(history included), over the workspace's quota of {size_text(quota)}; volume {name!r} alone keeps "
                f"{size_text(stored)}. {how}ask an admin to raise the workspace's quota."
            )


def size_text(n: int) -> str:
    """'1,000 bytes'; from 1 MiB on with the size a person reads at a glance: '52,428,800 bytes (50.0 MB)'."""
    if n < 1024 * 1024:
        return f"{n:,} bytes"
    return f"{n:,} bytes ({filesizeformat(n)})".replace("\xa0", " ")


RAISE_WORKSPACE_CAP = "ask an admin to raise the limit the workspace sets on every volume (Max volume size)."


def file_over_limit(limit: int, path: str | None = None) -> LimitExceeded:
    """The one refusal of a file over the per-file limit (`conf.max_file_size`), whoever writes it; `path`
    is None where only the bytes are known (an agent's blob upload)."""
    subject = f"file {path!r}" if path is not None else "a file"
    return LimitExceeded(f"{subject} is over the limit of {size_text(limit)} per file; make it smaller or split it "
                         "(the enterprise edition lifts this limit). Nothing was committed.", path=path)


def check_size(volume_name: str, base_size: int | None, size: int, cap: int | None,
               how: str = RAISE_WORKSPACE_CAP) -> None:
    """The cap on a volume's current files: LimitExceeded when a change grows them (from `base_size`
    bytes, None when unknown) to `size`, over `cap`. `how` says who may raise the cap (`raise_cap`); a
    worker that knows only the workspace's cap checks it before uploading."""
    if cap is not None and size > cap and (base_size is None or size > base_size):
        raise LimitExceeded(
            f"volume {volume_name!r} would be {size_text(size)}, over its limit of {size_text(cap)}. "
            f"Nothing was committed. Delete files, or {how}"
        )


def raise_cap(volume: Volume) -> str:
    """How to raise the cap that binds `volume`: its own (owner or admin) or the workspace's (admin)."""
    if volume.max_size_bytes is not None and volume.max_size_bytes == volume.size_cap:
        return (f"raise the volume's limit (its owner or an admin: Size limit on the volume's page, or "
                f"`python manage.py volume quota {volume.name} SIZE`).")
    return RAISE_WORKSPACE_CAP


def kept_bytes(volume_id: int, generation: int) -> int:
    """What the volume's kept history (its current generation included) holds in storage: the figure its
    cap is enforced on."""
    return _stored(volume_id, generation, timezone.now())[0]
