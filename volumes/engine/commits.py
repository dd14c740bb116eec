"""Moving a volume's pointer to a new generation: one conditional update under the lease."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models.functions import Now

from ..exceptions import Conflict, LeaseLost
from ..models import Volume, VolumeCommit
from . import history
from .faults import crash_point
from .leases import Lease
from .manifest import Manifest, diff


@dataclass(frozen=True)
class ChangeCounts:
    files_added: int = 0
    files_changed: int = 0
    files_deleted: int = 0
    bytes_added: int = 0
    bytes_changed: int = 0
    bytes_deleted: int = 0

    @classmethod
    def between(cls, base: Manifest, new: Manifest) -> "ChangeCounts":
        added, changed, deleted = diff(base, new)
        return cls(
            files_added=len(added),
            files_changed=len(changed),
            files_deleted=len(deleted),
            bytes_added=sum(e.size for e in added),
            bytes_changed=sum(e.size for e in changed),
            bytes_deleted=sum(e.size for e in deleted),
        )


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
    """Make `manifest_key` the volume's current generation; refused unless the lease is live,
    its token current and the volume still at `parent`. Returns the new generation."""
    generation = parent + 1
    with transaction.atomic():
        moved = Volume.objects.filter(
            pk=lease.volume_id, lease_token=lease.token, lease_expires_at__gt=Now(), generation=parent
        ).update(
            generation=generation,
            manifest_key=manifest_key,
            size_bytes=manifest.size_bytes,
            file_count=manifest.file_count,
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
            raise Conflict(
                f"volume {lease.volume_name!r} moved to generation {row['generation']} "
                f"while this change was based on {parent}; nothing was committed, retry"
            )
        crash_point("commit.inside_transaction")
        VolumeCommit.objects.create(
            volume_id=lease.volume_id,
            generation=generation,
            parent=parent,
            manifest_key=manifest_key,
            lease_token=lease.token,
            created_at=Now(),
            user_id=user_id,
            job_id=job_id,
            message=message[:300],
            size_bytes=manifest.size_bytes,
            file_count=manifest.file_count,
            **counts.__dict__,
        )
    history.record("commit", lease, "ok", parent=parent, generation=generation)
    return generation
