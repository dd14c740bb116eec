"""The first line of every API view: who is asking, and for which workspace, volume, job or path.

Access decisions themselves live in `volumes.permissions`; these helpers only ask it and raise
the domain errors (404 for non-members, 403 for members without the right).
"""
from __future__ import annotations

import re

from django.db.models import prefetch_related_objects

from ..exceptions import InvalidPath, NotFound
from ..models import Job, Volume, Workspace
from ..permissions import Access, job_for, volume_for, workspace_for
from ..storage.keys import safe_relpath

# After the server's one decode no percent-escape may be left: it would mean a doubly encoded
# path (`%252e%252e` -> `%2e%2e`), which some later layer might decode into a traversal, or bytes
# that were not UTF-8 (Django re-escapes those). Refusing every escape, not only dot, slash,
# backslash and NUL, keeps the rule simple; a literal `%` not followed by two hex digits is fine.
_ENCODED = re.compile(r"%[0-9a-f]{2}", re.IGNORECASE)
# Control characters (newlines, escapes) are refused too: they would forge log lines and cannot go
# into a Content-Disposition header. Jobs may still create such names; the API refuses them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 4096


def _printable(value: str, what: str) -> None:
    # A NUL can never be in a name, and PostgreSQL refuses it even in a lookup.
    if "\x00" in value:
        raise NotFound(f"{what} {value!r} not found")


def workspace(request, ws_id: str) -> tuple[Workspace, str]:
    _printable(ws_id, "workspace")
    return workspace_for(request.user, ws_id)


def volume(request, ws_id: str, name: str, need: str = "see") -> tuple[Volume, Access]:
    """The volume and the caller's access, or NotFound/PermissionDenied without the `need`ed right."""
    _printable(ws_id, "workspace")
    _printable(name, "volume")
    return volume_for(request.user, ws_id, name, need)


def job(request, ws_id: str, job_id: int) -> tuple[Workspace, Job]:
    """A job the caller may see: admins see every job of the workspace, members their own."""
    ws, _ = workspace(request, ws_id)
    found = job_for(request.user, ws, job_id)
    prefetch_related_objects([found], "mounts")
    return ws, found


def clean_path(raw: str, allow_root: bool = False) -> str:
    """A user-supplied path inside a volume, checked; InvalidPath (400) for anything hostile."""
    if not isinstance(raw, str):
        raise InvalidPath("a path must be a string")
    if _ENCODED.search(raw):
        raise InvalidPath(
            f"{raw[:200]!r} still contains a percent-escape after decoding (double encoding?); "
            "encode paths exactly once"
        )
    if _CONTROL.search(raw):
        raise InvalidPath(f"{raw[:200]!r} contains a control character; paths given to the API may not")
    if allow_root and raw == "":
        return safe_relpath(raw, allow_root=True)
    # Checked here as well as in safe_relpath: the API refuses, never normalises, what could escape.
    if raw.startswith("/") or "\\" in raw:
        raise InvalidPath(f"{raw[:200]!r} is absolute or has a backslash; give a path relative to the volume")
    parts = raw.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidPath(f"{raw[:200]!r} has an empty, '.' or '..' segment; give a plain relative path")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES or any(
        len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts
    ):
        raise InvalidPath(
            f"the path is too long: at most {MAX_NAME_BYTES} bytes per name and {MAX_PATH_BYTES} bytes in all"
        )
    return safe_relpath(raw, allow_root=allow_root)
