"""Writes for shares: who besides its owner and the workspace admins may read or write a volume."""
from __future__ import annotations

from django.contrib.auth.models import Group

from .. import permissions
from ..exceptions import NotFound, VolumesError
from ..models import Volume


def share_set(volume: Volume, target, level: str | None) -> None:
    """Give a member or a group of the volume's workspace `read` or `write` on it (replacing the share
    they had), or remove their share (level None). Nobody outside the workspace ever gets a share."""
    if level not in (None, permissions.READ, permissions.WRITE):
        raise VolumesError(f"a share gives 'read' or 'write', not {level!r}")
    workspace = volume.workspace_id
    if isinstance(target, Group):
        if not permissions.groups_in_workspace(volume.workspace).filter(pk=target.pk).exists():
            raise NotFound(f"group {target.name!r} has no member of workspace {workspace!r}")
    elif permissions.role(target, workspace) is None:
        raise permissions.not_a_member(target, workspace)
    permissions.set_share(volume, target, level)
