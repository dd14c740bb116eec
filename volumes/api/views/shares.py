"""Who a volume is shared with: list, grant, revoke."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from ... import permissions, selectors
from ...exceptions import NotFound
from ...services.shares import share_set
from .. import access
from .. import serializers as s
from .common import ERRORS, ApiView, validated


def _principal(workspace, data: dict):
    """The workspace member or group a share names; NotFound for anyone outside the workspace."""
    if data.get("user"):
        user = selectors.workspace_members(workspace).filter(username__iexact=data["user"]).first()
        if user is None:
            raise NotFound(f"no member named {data['user']!r} in workspace {workspace.id!r}")
        return user
    group = permissions.groups_in_workspace(workspace).filter(name__iexact=data["group"]).first()
    if group is None:
        raise NotFound(f"no group named {data['group']!r} with members in workspace {workspace.id!r}")
    return group


def _shares(volume) -> Response:
    rows = [{"kind": sh.kind, "name": sh.name, "access": sh.access} for sh in permissions.shares_of(volume)]
    return Response(s.ShareSerializer(rows, many=True).data)


class SharesView(ApiView):
    @extend_schema(summary="Who the volume is shared with (owner and admins)",
                   responses={200: s.ShareSerializer(many=True), **ERRORS})
    def get(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="share")
        return _shares(volume)

    @extend_schema(summary="Share with a user or group, read or write (replaces their share)",
                   request={"application/json": s.SHARE_GRANT},
                   responses={200: s.ShareSerializer(many=True), **ERRORS})
    def post(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="share")
        data = validated(s.ShareGrantSerializer, request.data)
        share_set(volume, _principal(volume.workspace, data), data["access"])
        return _shares(volume)

    @extend_schema(
        summary="Remove a user's or group's share (body or query: user= / group=)",
        parameters=[OpenApiParameter("user", str), OpenApiParameter("group", str)],
        request={"application/json": s.SHARE_REVOKE}, responses={200: s.ShareSerializer(many=True), **ERRORS},
    )
    def delete(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="share")
        data = validated(s.ShareRevokeSerializer, request.data or request.query_params)
        share_set(volume, _principal(volume.workspace, data), None)
        return _shares(volume)
