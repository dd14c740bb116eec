"""`volume fsck`: check a volume's current generation, and repair a damaged one.

The check reads the manifest as stored (without trusting it), names every entry a volume cannot
hold, and checks that every blob exists with the right size (and, with `deep`, the right hash).
The repair commits a new generation with only what is still readable, under the lease like any
other change; older generations stay in the history untouched.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .. import conf
from ..engine import manifest_store
from ..engine.manifest import FILE, Manifest
from ..exceptions import BlobMissing, IntegrityError, VolumesError
from ..models import Volume
from ..storage.factory import store_for_volume
from ..storage.keys import blob_key


@dataclass(frozen=True)
class Problem:
    path: str
    what: str  # "entry" (cannot be held), "missing" (blob gone), "size", "hash", "manifest" (unreadable)
    detail: str

    def describe(self) -> str:
        return f"{self.path!r}: {self.detail}" if self.path else self.detail


@dataclass
class Health:
    volume: str
    generation: int
    entries: int = 0
    files_checked: int = 0
    hashes_checked: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def repairable(self) -> bool:
        return bool(self.problems) and not any(p.what == "manifest" for p in self.problems)

    def summary(self) -> str:
        if self.ok:
            checked = "sizes and hashes" if self.hashes_checked else "sizes"
            return (f"volume {self.volume!r} generation {self.generation} is healthy: {self.entries:,} entries, "
                    f"{self.files_checked:,} files ({checked} checked)")
        return f"volume {self.volume!r} generation {self.generation} has {len(self.problems):,} problems"


def _hash_of(store, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in store.open_read(key):
        digest.update(chunk)
    return digest.hexdigest()


def _examine(volume: Volume, deep: bool) -> tuple[Health, Manifest | None]:
    health = Health(volume.name, volume.generation)
    if not volume.manifest_key:
        return health, Manifest()
    store, prefix = store_for_volume(volume)
    try:
        manifest, dropped = Manifest.salvage(manifest_store.read_bytes(store, volume.manifest_key, salvage=True))
    except (IntegrityError, BlobMissing) as exc:
        health.problems.append(Problem("", "manifest", f"the manifest of this generation cannot be read ({exc}); "
                                       "restore an earlier generation from the History"))
        return health, None
    health.problems += [Problem(path, "entry", f"cannot be stored in a volume: {why}") for path, why in dropped]
    health.entries = len(manifest.entries)
    files = sorted({(e.hash, e.size) for e in manifest.files})

    def check(item: tuple[str, int]) -> tuple[str, str]:
        digest, size = item
        key = blob_key(prefix, digest)
        try:
            real = store.size(key)
        except BlobMissing:
            return "missing", "its content is missing from storage"
        if real != size:
            return "size", f"its content has {real:,} bytes, not {size:,}"
        if deep and _hash_of(store, key) != digest:
            return "hash", "its content does not match its hash"
        return "", ""

    with ThreadPoolExecutor(conf.get("TRANSFER_THREADS")) as pool:
        verdicts = dict(zip(files, pool.map(check, files)))
    health.files_checked = sum(1 for _ in manifest.files)
    health.hashes_checked = deep
    for entry in sorted(manifest.files, key=lambda e: e.path):
        what, detail = verdicts[(entry.hash, entry.size)]
        if what:
            health.problems.append(Problem(entry.path, what, detail))
    return health, manifest


def volume_check(volume: Volume, deep: bool = True) -> Health:
    """What is wrong with the volume's current generation (nothing: `health.ok`)."""
    return _examine(volume, deep)[0]


def volume_repair(volume: Volume, user=None, deep: bool = True) -> tuple[Health, int | None]:
    """Commit the readable part of a damaged current generation as the next one; returns (what was found,
    the new generation or None when there was nothing to repair)."""
    from .files import _commit, _leased, _load_manifest

    with _leased(volume, user, read=False) as (lease, remote, _):
        volume = Volume.objects.select_related("storage").get(pk=volume.pk)
        health, salvaged = _examine(volume, deep)
        if health.ok:
            return health, None
        if salvaged is None:
            raise VolumesError(health.problems[0].detail)
        bad = {p.path for p in health.problems if p.what != "entry"}
        kept = Manifest({path: e for path, e in salvaged.entries.items() if not (e.type == FILE and path in bad)})
        # The base for the change counts: what a reader could make of the old generation.
        base = Manifest(dict(salvaged.entries))
        names = ", ".join(p.path for p in health.problems[:3]) + (" ..." if len(health.problems) > 3 else "")
        generation = _commit(lease, remote, base, kept, f"repair: dropped {names}"[:300])
    _load_manifest.cache_clear()
    return health, generation
