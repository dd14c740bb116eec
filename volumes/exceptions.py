"""One error hierarchy: each error has a stable code and an HTTP status.

The DRF exception handler, the dashboard and the CLI all render `str(error)`,
so every message says what went wrong and what to do about it.
"""
from __future__ import annotations


class VolumesError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class AnnotationError(VolumesError):
    """A bad `volume:` or `sandbox` annotation; `line` is 1-based (0 when not tied to a line)."""

    code = "annotation_error"

    def __init__(self, message: str, line: int = 0) -> None:
        self.line = line
        text = f"line {line}: {message}" if line else message
        super().__init__(text, line=line)


class InvalidName(VolumesError):
    code = "invalid_name"


class InvalidPath(VolumesError):
    code = "invalid_path"


class NotFound(VolumesError):
    code = "not_found"
    status = 404

    @classmethod
    def volume(cls, name: str, workspace_id: str) -> "NotFound":
        """The one wording for a volume that is not there (or not visible), from every surface."""
        return cls(f"volume {name!r} not found in workspace {workspace_id!r}")


class PermissionDenied(VolumesError):
    code = "permission_denied"
    status = 403


class InvalidSize(VolumesError):
    """A size that is not a whole number of bytes >= 0 (or a human size like "10 GB")."""

    code = "invalid_size"


class LimitExceeded(VolumesError):
    code = "limit_exceeded"
    status = 413


class LengthRequired(VolumesError):
    """A body sent without a Content-Length that this server cannot read to its end."""

    code = "length_required"
    status = 411


class Conflict(VolumesError):
    code = "conflict"
    status = 409


class VolumeInTrash(Conflict):
    """The name belongs to a volume in the workspace's trash: restore it or delete it for good first."""

    code = "volume_in_trash"


class LeaseHeld(Conflict):
    """The volume is leased by someone else."""

    code = "lease_held"


class LeaseLost(Conflict):
    """Our lease expired or was taken over; nothing was committed."""

    code = "lease_lost"


class JobFinished(LeaseLost):
    """The job already finished: its key may not change or read anything any more."""

    code = "job_finished"


class LeaseTimeout(Conflict):
    code = "lease_timeout"


class StorageNotConfigured(VolumesError):
    code = "storage_not_configured"
    status = 409


class StorageUnavailable(VolumesError):
    """The object storage is down, refused our credentials, or answered nonsense."""

    code = "storage_unavailable"
    status = 503
    # Why, for callers that decide what to do: retry (TRANSIENT) or give up and say which part failed.
    REASONS = ("unreachable", "timeout", "server_error", "denied", "no_bucket", "other")
    TRANSIENT = frozenset({"unreachable", "timeout", "server_error"})
    reason = "other"  # also for instances rebuilt from an API answer (volumes.agent.client.error_from_response)
    detail = ""
    storage = ""

    def __init__(self, storage: str, detail: str, reason: str = "other") -> None:
        assert reason in self.REASONS, reason
        self.storage = storage
        self.detail = detail
        self.reason = reason
        super().__init__(
            f"storage {storage!r} is unavailable: {detail}. "
            "Check that it is running and its credentials in Settings > Storage, then retry.",
            storage=storage, reason=reason, cause=detail,
        )

    @property
    def transient(self) -> bool:
        """A blip (connection refused, timeout, 5xx) that a retry may get past; others fail at once."""
        return self.reason in self.TRANSIENT


class ServerUnavailable(StorageUnavailable):
    """An agent or the CLI cannot talk to the server; the message names the real cause
    (unreachable, https redirect, TLS handshake, timeout), not a storage."""

    code = "server_unavailable"

    def __init__(self, detail: str, reason: str = "unreachable") -> None:
        assert reason in self.REASONS, reason
        self.storage, self.detail, self.reason = "server", detail, reason
        VolumesError.__init__(self, detail, storage="server")


class TokenRefused(VolumesError):
    """The server does not accept the API token (wrong, deleted, or its user is inactive)."""

    code = "token_refused"
    status = 401


class StorageRefused(VolumesError):
    """A storage setting that this installation does not allow (a folder outside the base, a local endpoint)."""

    code = "storage_refused"
    status = 400


class StorageCheckFailed(VolumesError):
    """Saving or testing a storage failed at one step; the message says which, never what exists there."""

    code = "storage_check_failed"
    status = 400


class BlobMissing(VolumesError):
    """An object that should exist in storage does not."""

    code = "blob_missing"
    status = 500


class IntegrityError(VolumesError):
    """Content does not match its hash."""

    code = "integrity_error"
    status = 400


class JobFailed(VolumesError):
    code = "job_failed"


def public_error(exc: VolumesError, sees_storage) -> tuple[str, dict]:
    """The message and details a caller may see. Storage errors name server paths, endpoints and
    object keys: only those who configure storage (workspace admins, staff) see them; others get
    what happened and whom to ask. The full error is logged either way. `sees_storage` may be a
    callable, asked only for storage errors."""
    if not isinstance(exc, (BlobMissing, StorageUnavailable)) or (sees_storage() if callable(sees_storage)
                                                                   else sees_storage):
        return exc.message, exc.details
    import logging

    logging.getLogger("volumes").warning("%s (shown to the caller without storage details)", exc.message)
    if isinstance(exc, BlobMissing):
        return ("stored data of this volume is missing from its storage; ask a workspace admin to check "
                "and repair the volume", {})
    # The reason names no server detail, and tells an agent of a member with the agent role a blip from a refusal.
    return ("the volume's storage is unavailable right now; retry later, or tell a workspace admin",
            {"reason": exc.reason})
