"""The server side of agent workers: claiming jobs and the lease/blob/commit engine over HTTP.

An agent worker holds no database or storage credentials; the API calls these functions
on its behalf. They check everything against the job the agent claimed (its mounts and
their modes, decided by `jobs.job_prepare` as the job's user) and the lease's fencing
token, then use the same engine code as in-process workers (`DirectRemote`, `leases`).

Who may act as an agent: workspace admins, and members given the agent role of that workspace
(`Membership.runs_agents`, `manage.py agent_role`); see `permissions.can_run_agents`. An agent reads and
writes only what both the job's user and the agent's own user may: a job whose volumes the
agent's user may not use as the job does is left queued for another worker (`agent_may_run`).
Every request about a job needs the job running and the key of its current claim; finishing
releases the job's leases and pins. A read-only mount pins its generation (`agent_pin`) and reads
manifest and blobs under that pin instead of a lease.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from django.core import signing
from django.db.models.functions import Now

from .. import conf, permissions
from ..engine import commits, leases, manifest_store, pins
from ..engine.commits import Change, ChangeCounts
from ..engine.leases import Holder, Lease
from ..engine.pins import Pin
from ..engine.manifest import HASH_RE, Manifest
from ..engine.remote import DirectRemote
from ..exceptions import (
    BlobMissing, Conflict, IntegrityError, InvalidPath, JobFinished, LeaseLost, NotFound, PermissionDenied,
    VolumesError,
)
from ..models import Job, JobVolume, Volume, VolumePin, Workspace
from ..storage.factory import store_for_volume
from ..storage.keys import blob_key
from . import direct, jobs

JOB_KEY_SALT = "volumes.agent.job"
CHUNK = 1024 * 1024
MAX_WAIT_PER_REQUEST = 25.0


# Which jobs an agent may run ------------------------------------------------------------------------

def agent_may_run(job: Job, user) -> bool:
    """Whether the agent's user may use every existing volume of the job at least as the job's user may.

    Jobs whose annotations fail are claimed (and fail as on any worker); volumes that do not exist
    yet are created open to every member, so the agent's user may use them."""
    from .. import annotations

    try:
        resolved = annotations.resolve(annotations.parse(job.content, job.language), job.workspace_id,
                                       job.args or {})
    except VolumesError:
        return True
    volumes = (Volume.objects.named(job.workspace_id, mount.name).first() for mount in resolved)
    return all(permissions.agent_covers(user, job.user, volume) for volume in volumes if volume is not None)


# Claiming -----------------------------------------------------------------------------------------

@dataclass
class Claimed:
    job: Job
    plans: list[jobs.MountPlan]
    sandbox: bool
    key: str  # proves to later requests that this agent user claimed this job


def job_key(job: Job, user) -> str:
    """Signed (job, agent user, claim time): only this claim of this job by this user."""
    return signing.dumps({"job": job.pk, "user": user.pk, "claim": _claim_stamp(job)}, salt=JOB_KEY_SALT)


def _claim_stamp(job: Job) -> str:
    return job.started_at.isoformat() if job.started_at else ""


def agent_claim_next(workspace: Workspace, user, worker: str) -> Claimed | None:
    """Claim the oldest queued job of the workspace and prepare its mounts (as the job's user).

    Jobs whose annotations or permissions fail are finished as failures here, as an in-process
    worker would, and the next queued job is tried. None when nothing is queued."""
    permissions.require_agent(user, workspace)
    worker = f"agent {worker}"[:200]
    skipped: list[int] = []  # jobs this agent's user may not run: left queued for other workers
    for _ in range(50):
        candidate = (
            Job.objects.filter(workspace=workspace, status=Job.Status.QUEUED, cancel_requested=False)
            .exclude(pk__in=skipped)
            .select_related("user", "workspace")
            .order_by("created_at", "id")
            .first()
        )
        if candidate is None:
            return None
        if not agent_may_run(candidate, user):
            skipped.append(candidate.pk)
            continue
        job = jobs.job_claim(candidate.pk, worker)
        if job is None:
            continue  # another worker was faster
        reporter = jobs.JobReporter(job.pk)
        reporter.log(f"job {job.pk} started on {worker} (agent user {user}) as {job.user}")
        try:
            plans, sandbox = jobs.job_prepare(job)
            for plan in plans:  # shares may have changed since agent_may_run
                permissions.require_agent_mount(user, Volume.objects.named(job.workspace_id, plan.name).get(),
                                                plan.read_only)
        except VolumesError as exc:
            reporter.log(f"error: {exc}")
            reporter.finish(Job.Status.FAILURE, error=str(exc))
            continue
        reporter.flush()
        return Claimed(job, plans, sandbox, job_key(job, user))
    return None


def agent_settings() -> dict:
    """The server's settings an agent must run jobs with, so both sides agree on TTLs and limits."""
    return {
        "LEASE_TTL": conf.get("LEASE_TTL"),
        "LEASE_RENEW_INTERVAL": conf.get("LEASE_RENEW_INTERVAL"),
        "LEASE_WAIT_MAX": conf.get("LEASE_WAIT_MAX"),
        "EDITION": conf.edition(),
        "MAX_FILE_SIZE": conf.max_file_size(),
        "JOB_TIMEOUT": conf.get("JOB_TIMEOUT"),
        "SANDBOX_NETWORK": conf.get("SANDBOX_NETWORK"),
        "STORAGE_RETRY_FOR": conf.get("STORAGE_RETRY_FOR"),
    }


def agent_job(workspace: Workspace, user, job_id: int, key: str, allow_finished: bool = False) -> Job:
    """The running job an agent acts on, checked against the key it got when it claimed the job.

    JobFinished once the job finished (only releasing a lease is answered then, with False)."""
    permissions.require_agent(user, workspace)
    job = Job.objects.filter(pk=job_id, workspace=workspace).select_related("user", "workspace").first()
    if job is None:  # first, so a job of another workspace is 404 as everywhere else
        raise NotFound(f"job {job_id} not found")
    try:
        claim = signing.loads(key or "", salt=JOB_KEY_SALT)
    except signing.BadSignature:
        claim = None
    if not claim or claim.get("job") != job_id or claim.get("user") != user.pk or \
            claim.get("claim") != _claim_stamp(job):
        raise PermissionDenied(
            f"job {job_id} was not claimed by this agent; only the agent that claimed a job may act on it"
        )
    if not allow_finished:
        require_running(job)
    return job


def require_running(job: Job) -> None:
    if job.is_finished:
        raise JobFinished(
            f"job {job.pk} has already finished ({job.status}); its key may not read or change anything any more"
        )


# Leases ------------------------------------------------------------------------------------------

def _mount(job: Job, name: str) -> tuple[Volume, JobVolume]:
    # No name holds a NUL, and PostgreSQL refuses one even in a lookup.
    volume = None if "\x00" in name else Volume.objects.named(job.workspace_id, name).select_related("storage").first()
    mount = JobVolume.objects.filter(job=job, volume=volume).first() if volume else None
    if volume is None or mount is None:
        raise NotFound(f"job {job.pk} does not mount a volume named {name!r}")
    return volume, mount


def _lease_of(volume: Volume, token: int) -> Lease:
    return Lease(
        volume.pk, volume.workspace_id, volume.name, token, volume.lease_holder, volume.generation,
        volume.manifest_key, conf.get("LEASE_TTL"),
    )


def agent_acquire(job: Job, name: str, holder: str, wait: float | None) -> Lease:
    """Take the volume's lease for the job, waiting at most MAX_WAIT_PER_REQUEST seconds in this request."""
    require_running(job)
    volume, _ = _mount(job, name)
    wait = MAX_WAIT_PER_REQUEST if wait is None else max(0.0, min(float(wait), MAX_WAIT_PER_REQUEST))
    return leases.acquire(volume.pk, holder, job_id=job.pk, wait=wait)


def current_holder(job: Job, name: str) -> Holder | None:
    """Who holds the job's volume, with the queue counted (for the waiting job's log)."""
    volume, _ = _mount(job, name)
    return leases.with_queue(leases.current_holder(volume.pk), volume.pk, job.pk)


def agent_lease(job: Job, name: str, token: int, write: bool = False) -> tuple[Volume, Lease]:
    """The volume and the job's lease on it; LeaseLost unless `token` is the job's current lease."""
    volume, mount = _mount(job, name)
    if write and mount.mode != JobVolume.Mode.READ_WRITE:
        raise PermissionDenied(
            f"job {job.pk} mounts volume {volume.name!r} read-only; nothing may be written to it"
        )
    lease = _lease_of(volume, token)
    leases.check_held(lease, job_id=job.pk)
    return volume, lease


def agent_renew(job: Job, name: str, token: int) -> None:
    require_running(job)
    _, lease = agent_lease(job, name, token)
    leases.renew(lease)


def agent_release(job: Job, name: str, token: int) -> bool:
    """Give back the job's lease; False if that token is not (or no longer) this job's lease."""
    volume, _ = _mount(job, name)
    # Tokens are sequential: check the lease is this job's, so no agent can release another job's.
    if not Volume.objects.filter(pk=volume.pk, lease_token=token, lease_job_id=job.pk).exists():
        return False
    return leases.release(_lease_of(volume, token))


# Pins: read-only mounts ---------------------------------------------------------------------------

def agent_pin(job: Job, name: str, holder: str) -> Pin:
    """Pin the committed generation of a volume the job mounts (read-only or not: reading is allowed)."""
    require_running(job)
    volume, _ = _mount(job, name)
    return pins.pin(volume.pk, holder, job_id=job.pk)


def agent_pinned(job: Job, name: str, pin_id: int) -> tuple[Volume, Pin]:
    """The volume and the job's live pin on it; LeaseLost unless `pin_id` is such a pin."""
    volume, _ = _mount(job, name)
    row = VolumePin.objects.filter(pk=pin_id, job=job, volume=volume, expires_at__gt=Now()).first()
    if row is None:
        raise LeaseLost(f"the pin {pin_id} on volume {volume.name!r} expired or is not this job's; pin again")
    return volume, Pin(volume.pk, volume.workspace_id, volume.name, 0, row.holder, row.generation,
                       row.manifest_key, conf.get("LEASE_TTL"), pin_id=row.pk)


def agent_renew_pin(job: Job, name: str, pin_id: int) -> None:
    require_running(job)
    pins.renew(agent_pinned(job, name, pin_id)[1])


def agent_release_pin(job: Job, name: str, pin_id: int) -> bool:
    """Drop the job's pin; False if it is not (or no longer) there."""
    volume, _ = _mount(job, name)
    return VolumePin.objects.filter(pk=pin_id, job=job, volume=volume).delete()[0] == 1


# Manifests and blobs -----------------------------------------------------------------------------

def _readable(job: Job, name: str, token: int | None, pin_id: int | None) -> tuple[Volume, Lease]:
    """What the job reads under: its pin when it names one, else its lease."""
    if pin_id is not None:
        return agent_pinned(job, name, pin_id)
    if token is None:
        raise VolumesError("give the lease's fencing token as ?token=N or the pin as ?pin=N")
    return agent_lease(job, name, token)


def agent_manifest(job: Job, name: str, token: int | None, generation: int, pin_id: int | None = None) -> Manifest:
    """The manifest of `generation` (the one the lease or pin was taken at) of a volume the job holds."""
    from .files import manifest_of

    volume, held = _readable(job, name, token, pin_id)
    if generation == 0:
        return Manifest()
    if isinstance(held, Pin):
        _check_pinned(volume, held, generation)
        # By its key: GC keeps a pinned generation's manifest even when its history row was pruned.
        return DirectRemote(user_id=job.user_id).read_manifest(held)
    return manifest_of(volume, generation)


def _check_pinned(volume: Volume, pin: Pin, generation: int) -> None:
    if generation != pin.generation:
        raise Conflict(f"pin {pin.pin_id} holds generation {pin.generation} of volume {volume.name!r}, not {generation}")


def _stored_manifest(job: Job, name: str, token: int | None, generation: int, pin_id: int | None
                     ) -> tuple[Volume, str]:
    """The volume and the key of its manifest of `generation`, which the job reads under its lease or pin."""
    from .files import manifest_key_of

    volume, held = _readable(job, name, token, pin_id)
    if generation == 0:
        raise NotFound(f"generation 0 of volume {volume.name!r} is empty: it has no stored manifest")
    if isinstance(held, Pin):
        _check_pinned(volume, held, generation)
        return volume, held.manifest_key
    return volume, manifest_key_of(volume, generation)


def agent_manifest_document(job: Job, name: str, token: int | None, generation: int, pin_id: int | None = None
                            ) -> bytes:
    """The manifest of `generation` as stored. A document that names its parts lets an agent that holds most of
    them (another generation of the volume) fetch only the others: agent_manifest_parts."""
    volume, key = _stored_manifest(job, name, token, generation, pin_id)
    store, _ = store_for_volume(volume)
    return store.get_bytes(key)


_PARTS_OF: dict[tuple[int, str], frozenset[str]] = {}  # (storage, manifest key) -> its parts: a manifest never changes


def agent_manifest_parts(job: Job, name: str, token: int | None, generation: int, digests: list[str],
                         pin_id: int | None = None) -> bytes:
    """Parts of the manifest of `generation`, by digest, in order, each checked against its name, in one body
    (manifest_store.pack_parts). Only that manifest's own parts: nothing else in the storage is read this way."""
    volume, key = _stored_manifest(job, name, token, generation, pin_id)
    store, _ = store_for_volume(volume)
    memo = (volume.storage_id, key)
    if memo not in _PARTS_OF:
        if len(_PARTS_OF) >= 64:
            _PARTS_OF.clear()
        _PARTS_OF[memo] = frozenset(manifest_store.part_digests(store, key))
    for digest in digests:
        if _check_digest(digest) not in _PARTS_OF[memo]:
            raise NotFound(f"{digest} is not a part of generation {generation} of volume {volume.name!r}")
    return manifest_store.pack_parts(manifest_store.fetch_parts(store, key, digests))


def _check_digest(digest: str) -> str:
    if not HASH_RE.match(digest or ""):
        raise InvalidPath(f"{digest!r} is not a SHA-256 hash (64 lowercase hex digits)")
    return digest


def agent_missing(job: Job, name: str, token: int, hashes: list[str], stored: int | None = None) -> set[str]:
    volume, lease = agent_lease(job, name, token)
    return DirectRemote(user_id=job.user_id).missing_blobs(lease, {_check_digest(h) for h in hashes}, stored)


def agent_blob_urls(job: Job, name: str, token: int | None, hashes, upload: bool, pin_id: int | None = None
                    ) -> dict[str, dict]:
    """Presigned transfers of these blobs of the volume, while the job holds its lease (or, to read, its pin);
    {} where the proxy must be used."""
    volume, _ = agent_lease(job, name, token, write=True) if upload else _readable(job, name, token, pin_id)
    hashes = {_check_digest(h) for h in hashes}
    return direct.upload_urls(volume, hashes) if upload else direct.download_urls(volume, hashes)


def agent_blob_open(job: Job, name: str, token: int | None, digest: str, pin_id: int | None = None
                    ) -> Iterator[bytes]:
    volume, _ = _readable(job, name, token, pin_id)
    store, prefix = store_for_volume(volume)
    key = blob_key(prefix, _check_digest(digest))
    try:
        return store.open_read(key)  # raises BlobMissing before the first chunk
    except BlobMissing:
        raise NotFound(f"blob {digest} does not exist in volume {volume.name!r}") from None


def agent_blob_put(job: Job, name: str, token: int, digest: str, stream: BinaryIO) -> bool:
    """Store an uploaded blob after checking its bytes hash to `digest`; False if it already existed."""
    require_running(job)
    _check_digest(digest)
    volume, lease = agent_lease(job, name, token, write=True)
    remote = DirectRemote(user_id=job.user_id)
    limit = conf.max_file_size()
    fd, tmp = tempfile.mkstemp(prefix="blob-")
    try:
        sha, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise commits.file_over_limit(limit)
                sha.update(chunk)
                out.write(chunk)
        if sha.hexdigest() != digest:
            raise IntegrityError(
                f"the uploaded bytes hash to {sha.hexdigest()}, not {digest}; the upload was damaged, retry it"
            )
        if not remote.missing_blobs(lease, {digest}):
            return False  # blobs are written once and never overwritten
        remote.upload_blob(lease, digest, tmp)
        return True
    finally:
        os.unlink(tmp)


# Commits -----------------------------------------------------------------------------------------

def agent_commit(job: Job, name: str, token: int, parent: int, manifest_json: bytes, message: str = "") -> tuple[int, str]:
    """Validate an agent's manifest and commit it through the one commit path (engine/commits.py)."""
    return agent_commit_many(job, [(name, token, parent, manifest_json, message)])[0]


def agent_commit_many(job: Job, items: list[tuple[str, int, int, bytes, str]]) -> list[tuple[int, str]]:
    """Validate every (volume name, token, parent, manifest json, message) of the job, then commit them
    all in one transaction: all or none. Returns (generation, manifest key) per item."""
    names = [name.lower() for name, *_ in items]
    if len(set(names)) != len(names):
        raise VolumesError("each volume may appear once in a commit")
    remote = DirectRemote(user_id=job.user_id)
    return remote.commit_changes([_agent_change(job, remote, *item) for item in items])


def _agent_change(job: Job, remote: DirectRemote, name: str, token: int, parent: int, manifest_json: bytes,
                  message: str = "") -> Change:
    """An agent's manifest as a change for the commit path, once every blob it names is checked."""
    require_running(job)
    volume, lease = agent_lease(job, name, token, write=True)
    manifest = Manifest.from_json(manifest_json)  # validates every path, type, hash and parent folder
    commits.check_current(lease, parent)
    limit = conf.max_file_size()
    if limit is not None:
        for entry in manifest.files:
            if entry.size > limit:
                raise commits.file_over_limit(limit, entry.path)
    from .files import manifest_of

    base = manifest_of(volume) if parent else Manifest()
    counts = ChangeCounts.between(base, manifest)
    remote.check_room(lease, manifest, counts)  # the commit's limits, before asking storage about blobs
    # Blobs of the current generation exist (the garbage collector takes the lease we hold),
    # so only the ones new in this manifest need checking.
    missing = remote.missing_blobs(lease, manifest.hashes() - base.hashes())
    accepted = direct.accept_uploads(volume, missing)  # checked before anything can name them
    missing -= accepted.keys()
    if missing:
        raise IntegrityError(
            f"{len(missing)} files of the manifest were never uploaded (e.g. {sorted(missing)[0]}); "
            "upload them, then commit again",
        )
    # A size that is not the blob's would make downloads announce a wrong Content-Length, and a known
    # blob reused under a small size would slip past the volume's cap: every size is checked, against
    # the base generation (checked when it was committed) or else against storage.
    known = {e.hash: e.size for e in base.files}
    for entry in manifest.files:
        if entry.hash in known and entry.size != known[entry.hash]:
            raise IntegrityError(
                f"the manifest gives file {entry.path!r} size {entry.size:,}, but its blob {entry.hash} has "
                f"{known[entry.hash]:,} bytes; nothing was committed"
            )
    store, prefix = store_for_volume(volume)
    claimed = sorted({(e.hash, e.size) for e in manifest.files if e.hash not in known})
    with ThreadPoolExecutor(conf.get("TRANSFER_THREADS")) as pool:
        actual = list(pool.map(lambda pair: accepted.get(pair[0]) if pair[0] in accepted else
                               store.size(blob_key(prefix, pair[0])), claimed))
    for (digest, size), real in zip(claimed, actual):
        if size != real:
            raise IntegrityError(
                f"the manifest gives file size {size:,} for blob {digest}, which has {real:,} bytes; nothing was committed"
            )
    return Change(lease, parent, base, manifest, job.pk, message, counts)


# Reports -----------------------------------------------------------------------------------------

MOUNT_FIGURES = {
    "lease_token", "base_generation", "committed_generation", "files_pulled", "bytes_pulled", "files_skipped",
    "files_pushed", "bytes_pushed", "files_deleted",
}


def agent_log(job: Job, text: str) -> None:
    """Append lines the agent stamped itself to the job's log."""
    jobs.job_log_append(job.pk, text)  # capped like every job log


def agent_mount_figures(job: Job, name: str, figures: dict) -> None:
    unknown = set(figures) - MOUNT_FIGURES
    if unknown:
        raise VolumesError(f"unknown mount figures: {', '.join(sorted(unknown))}")
    _, mount = _mount(job, name)
    jobs.JobReporter(job.pk).mount_figures(mount.volume_name, **figures)


def agent_heartbeat(job: Job) -> bool:
    """Record the agent is alive; True when the job should stop (cancelled)."""
    return jobs.JobReporter(job.pk).heartbeat()


def agent_finish(job: Job, status: str, result=None, error: str = "") -> None:
    if status not in Job.FINISHED:
        raise VolumesError(f"a job finishes as one of {', '.join(Job.FINISHED)}, not {status!r}")
    import json

    # PostgreSQL cannot store NUL in text or jsonb: keep the rest of what the script said.
    result = json.loads(json.dumps(result).replace("\\u0000", "\\ufffd"))
    error = error.replace("\x00", "\ufffd")
    finished = Job.objects.filter(pk=job.pk).exclude(status__in=Job.FINISHED).update(
        status=status, result=result, error=error[:10000], finished_at=Now()
    )
    leases.release_job(job.pk)  # a finished job holds nothing, whatever its agent does next
    pins.release_job(job.pk)
    if finished:
        jobs.job_outcome_observed(job.pk, status)
    if not finished:
        raise JobFinished(f"job {job.pk} had already finished; the first outcome is kept")
