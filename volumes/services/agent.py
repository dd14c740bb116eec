"""The server side of agent workers: claiming jobs and the lease/blob/commit engine over HTTP.

An agent worker holds no database or storage credentials; the API calls these functions
on its behalf. They check everything against the job the agent claimed (its mounts and
their modes, decided by `jobs.job_prepare` as the job's user) and the lease's fencing
token, then use the same engine code as in-process workers (`DirectRemote`, `leases`).

Who may act as an agent: workspace admins, and members of a group named "agents"
(see `can_run_agents`).
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
from ..engine import leases
from ..engine.commits import ChangeCounts
from ..engine.leases import Holder, Lease
from ..engine.manifest import HASH_RE, Manifest
from ..engine.remote import DirectRemote
from ..exceptions import (
    BlobMissing, Conflict, IntegrityError, InvalidPath, LeaseLost, LimitExceeded, NotFound, PermissionDenied,
    VolumesError,
)
from ..models import Job, JobVolume, Membership, Volume, Workspace
from ..storage.factory import store_for_storage
from ..storage.keys import blob_key, volume_prefix
from . import jobs

AGENTS_GROUP = "agents"
JOB_KEY_SALT = "volumes.agent.job"
CHUNK = 1024 * 1024
MAX_WAIT_PER_REQUEST = 25.0


# Who may run agents -----------------------------------------------------------------------------

def can_run_agents(user, workspace: Workspace) -> bool:
    """Workspace admins, and members in a group named "agents", may claim and run jobs."""
    user_role = permissions.role(user, workspace)
    if user_role == Membership.Role.ADMIN:
        return True
    return user_role is not None and user.groups.filter(name=AGENTS_GROUP).exists()


def require_agent(user, workspace: Workspace) -> None:
    if not can_run_agents(user, workspace):
        raise PermissionDenied(
            f"only admins of workspace {workspace.id!r} and members of the group {AGENTS_GROUP!r} can run "
            "agent workers; use a token of such a user"
        )


# Claiming -----------------------------------------------------------------------------------------

@dataclass
class Claimed:
    job: Job
    plans: list[jobs.MountPlan]
    sandbox: bool
    key: str  # proves to later requests that this agent user claimed this job


def job_key(job: Job, user) -> str:
    return signing.dumps({"job": job.pk, "user": user.pk}, salt=JOB_KEY_SALT)


def agent_claim_next(workspace: Workspace, user, worker: str) -> Claimed | None:
    """Claim the oldest queued job of the workspace and prepare its mounts (as the job's user).

    Jobs whose annotations or permissions fail are finished as failures here, as an in-process
    worker would, and the next queued job is tried. None when nothing is queued."""
    require_agent(user, workspace)
    worker = f"agent {worker}"[:200]
    for _ in range(50):
        job_id = (
            Job.objects.filter(workspace=workspace, status=Job.Status.QUEUED, cancel_requested=False)
            .order_by("created_at", "id")
            .values_list("pk", flat=True)
            .first()
        )
        if job_id is None:
            return None
        job = jobs.job_claim(job_id, worker)
        if job is None:
            continue  # another worker was faster
        reporter = jobs.JobReporter(job.pk)
        reporter.log(f"job {job.pk} started on {worker} (agent user {user}) as {job.user}")
        try:
            plans, sandbox = jobs.job_prepare(job)
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
    }


def agent_job(workspace: Workspace, user, job_id: int, key: str) -> Job:
    """The job an agent acts on, checked against the key it got when it claimed the job."""
    require_agent(user, workspace)
    job = Job.objects.filter(pk=job_id, workspace=workspace).select_related("user", "workspace").first()
    if job is None:  # first, so a job of another workspace is 404 as everywhere else
        raise NotFound(f"job {job_id} not found")
    try:
        claim = signing.loads(key or "", salt=JOB_KEY_SALT)
    except signing.BadSignature:
        claim = None
    if not claim or claim.get("job") != job_id or claim.get("user") != user.pk:
        raise PermissionDenied(
            f"job {job_id} was not claimed by this agent; only the agent that claimed a job may act on it"
        )
    return job


def require_running(job: Job) -> None:
    if job.is_finished:
        raise LeaseLost(f"job {job.pk} has already finished ({job.status}); it may not change volumes any more")


# Leases ------------------------------------------------------------------------------------------

def _mount(job: Job, name: str) -> tuple[Volume, JobVolume]:
    if "\x00" in name:  # no name holds a NUL, and PostgreSQL refuses one even in a lookup
        raise NotFound(f"job {job.pk} does not mount a volume named {name!r}")
    volume = Volume.objects.filter(workspace_id=job.workspace_id, name__iexact=name).select_related("storage").first()
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
    volume, _ = _mount(job, name)
    return leases.current_holder(volume.pk)


def agent_lease(job: Job, name: str, token: int, write: bool = False) -> tuple[Volume, Lease]:
    """The volume and the job's lease on it; LeaseLost unless `token` is the job's current lease."""
    volume, mount = _mount(job, name)
    if write and mount.mode != JobVolume.Mode.READ_WRITE:
        raise PermissionDenied(
            f"job {job.pk} mounts volume {volume.name!r} read-only; nothing may be written to it"
        )
    live = Volume.objects.filter(pk=volume.pk, lease_token=token, lease_job_id=job.pk, lease_expires_at__gt=Now())
    if not live.exists():
        raise LeaseLost(f"the lease on volume {volume.name!r} was lost (expired or taken over)")
    return volume, _lease_of(volume, token)


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


# Manifests and blobs -----------------------------------------------------------------------------

def agent_manifest(job: Job, name: str, token: int, generation: int) -> Manifest:
    """The manifest of `generation` (the one the lease was taken at) of a volume the job holds."""
    from .files import manifest_of

    volume, _ = agent_lease(job, name, token)
    if generation == 0:
        return Manifest()
    return manifest_of(volume, generation)


def _check_digest(digest: str) -> str:
    if not HASH_RE.match(digest or ""):
        raise InvalidPath(f"{digest!r} is not a SHA-256 hash (64 lowercase hex digits)")
    return digest


def agent_missing(job: Job, name: str, token: int, hashes: list[str]) -> set[str]:
    volume, lease = agent_lease(job, name, token)
    return DirectRemote(user_id=job.user_id).missing_blobs(lease, {_check_digest(h) for h in hashes})


def agent_blob_open(job: Job, name: str, token: int, digest: str) -> Iterator[bytes]:
    volume, _ = agent_lease(job, name, token)
    store = store_for_storage(volume.storage)
    key = blob_key(volume_prefix(volume.workspace_id, volume.name), _check_digest(digest))
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
                    raise LimitExceeded(f"the file is over the limit of {limit:,} bytes per file")
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
    """Validate an agent's manifest and commit it with the same code as `DirectRemote.commit`."""
    require_running(job)
    volume, lease = agent_lease(job, name, token, write=True)
    manifest = Manifest.from_json(manifest_json)  # validates every path, type, hash and parent folder
    if volume.generation != parent:
        raise Conflict(
            f"volume {volume.name!r} is at generation {volume.generation}, not {parent}; nothing was committed"
        )
    limit = conf.max_file_size()
    if limit is not None:
        for entry in manifest.files:
            if entry.size > limit:
                raise LimitExceeded(f"file {entry.path!r} is over the limit of {limit:,} bytes per file",
                                    path=entry.path)
    cap = job.workspace.max_volume_size
    if cap is not None and manifest.size_bytes > cap:
        raise LimitExceeded(
            f"volume {volume.name!r} would be {manifest.size_bytes:,} bytes, over its limit of {cap:,} bytes; "
            "nothing was committed"
        )
    from .files import manifest_of

    base = manifest_of(volume) if parent else Manifest()
    remote = DirectRemote(user_id=job.user_id)
    # Blobs of the current generation exist (the garbage collector takes the lease we hold),
    # so only the ones new in this manifest need checking.
    missing = remote.missing_blobs(lease, manifest.hashes() - base.hashes())
    if missing:
        raise IntegrityError(
            f"{len(missing)} files of the manifest were never uploaded (e.g. {sorted(missing)[0]}); "
            "upload them, then commit again",
        )
    # A size that is not the blob's would make downloads announce a wrong Content-Length.
    store, prefix = store_for_storage(volume.storage), volume_prefix(volume.workspace_id, volume.name)
    known = base.hashes()
    claimed = sorted({(e.hash, e.size) for e in manifest.files if e.hash not in known})
    with ThreadPoolExecutor(conf.get("TRANSFER_THREADS")) as pool:
        actual = list(pool.map(lambda pair: store.size(blob_key(prefix, pair[0])), claimed))
    for (digest, size), real in zip(claimed, actual):
        if size != real:
            raise IntegrityError(
                f"the manifest gives file size {size:,} for blob {digest}, which has {real:,} bytes; nothing was committed"
            )
    counts = ChangeCounts.between(base, manifest)
    return remote.commit(lease, parent, manifest, counts, job_id=job.pk, message=message)


# Reports -----------------------------------------------------------------------------------------

MOUNT_FIGURES = {
    "lease_token", "base_generation", "committed_generation", "files_pulled", "bytes_pulled", "files_skipped",
    "files_pushed", "bytes_pushed", "files_deleted",
}


def agent_log(job: Job, text: str) -> None:
    """Append lines the agent stamped itself to the job's log."""
    from django.db.models import F, Value
    from django.db.models.functions import Concat

    if text:
        Job.objects.filter(pk=job.pk).update(log=Concat(F("log"), Value(text)))


def agent_mount_figures(job: Job, name: str, figures: dict) -> None:
    unknown = set(figures) - MOUNT_FIGURES
    if unknown:
        raise VolumesError(f"unknown mount figures: {', '.join(sorted(unknown))}")
    _, mount = _mount(job, name)
    jobs.JobReporter(job.pk).mount_figures(mount.volume_name, **figures)


def agent_heartbeat(job: Job) -> bool:
    """Record the agent is alive; True when the job should stop (cancelled, or already finished)."""
    cancel = jobs.JobReporter(job.pk).heartbeat()
    return cancel or Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).exists()


def agent_finish(job: Job, status: str, result=None, error: str = "") -> None:
    if status not in Job.FINISHED:
        raise VolumesError(f"a job finishes as one of {', '.join(Job.FINISHED)}, not {status!r}")
    if job.is_finished:
        return  # reaped or cancelled meanwhile: keep the first outcome
    import json

    # PostgreSQL cannot store NUL in text or jsonb: keep the rest of what the script said.
    result = json.loads(json.dumps(result).replace("\\u0000", "\\ufffd"))
    error = error.replace("\x00", "\ufffd")
    Job.objects.filter(pk=job.pk).exclude(status__in=Job.FINISHED).update(
        status=status, result=result, error=error[:10000], finished_at=Now()
    )
