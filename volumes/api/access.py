"""The first line of every API view: who is asking, and for which workspace, volume, job or path.

Access decisions themselves live in `volumes.permissions`; these helpers only ask it and raise
the domain errors (404 for non-members, 403 for members without the right).
"""
from __future__ import annotations

from django.db.models import prefetch_related_objects

from ..exceptions import NotFound
from ..models import Job, Volume, Workspace
from ..permissions import Access, job_for, volume_for, workspace_for



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
