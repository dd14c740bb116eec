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


class PermissionDenied(VolumesError):
    code = "permission_denied"
    status = 403


class LimitExceeded(VolumesError):
    code = "limit_exceeded"
    status = 413


class Conflict(VolumesError):
    code = "conflict"
    status = 409


class LeaseHeld(Conflict):
    """The volume is leased by someone else."""

    code = "lease_held"


class LeaseLost(Conflict):
    """Our lease expired or was taken over; nothing was committed."""

    code = "lease_lost"


class LeaseTimeout(Conflict):
    code = "lease_timeout"


class StorageNotConfigured(VolumesError):
    code = "storage_not_configured"
    status = 409


class StorageUnavailable(VolumesError):
    """The object storage is down, refused our credentials, or answered nonsense."""

    code = "storage_unavailable"
    status = 503

    def __init__(self, storage: str, detail: str) -> None:
        self.storage = storage
        super().__init__(
            f"storage {storage!r} is unavailable: {detail}. "
            "Check that it is running and its credentials in Settings > Storage, then retry.",
            storage=storage,
        )


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
