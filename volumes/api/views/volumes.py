"""Volumes of a workspace and its trash: list, create, delete, duplicate, cap, restore, purge."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from ... import permissions, selectors
from ...exceptions import VolumesError
from ...services import volumes as volume_services
from .. import access
from .. import serializers as s
from .common import CONFLICT, ERRORS, ApiView, validated, volume_row


class VolumeListView(ApiView):
    @extend_schema(
        summary="List the volumes you can see",
        parameters=[
            OpenApiParameter("search", str, description="Part of the name"),
            OpenApiParameter("sort", str, enum=list(selectors.SORTS)),
        ],
        responses={200: s.VolumeSerializer(many=True), **ERRORS},
    )
    def get(self, request, ws: str):
        workspace, _ = access.workspace(request, ws)
        sort = request.query_params.get("sort", "name")
        if sort not in selectors.SORTS:
            raise VolumesError(f"?sort= must be one of {', '.join(selectors.SORTS)}, not {sort[:40]!r}")
        rows = selectors.volume_list_for_user(
            request.user, workspace, request.query_params.get("search", "")[:255].replace("\x00", ""),
            request.query_params.get("sort", "name"),
        )
        return Response(s.VolumeSerializer(rows, many=True).data)

    @extend_schema(
        summary="Create an empty volume (you become its owner)",
        request=s.VolumeCreateSerializer,
        responses={201: s.VolumeSerializer, 409: OpenApiResponse(description="Name taken"), **ERRORS},
    )
    def post(self, request, ws: str):
        workspace, _ = access.workspace(request, ws)
        data = validated(s.VolumeCreateSerializer, request.data)
        volume = volume_services.volume_create(workspace, data["name"], owner=request.user)
        row = volume_row(volume, permissions.access(request.user, volume))
        return Response(s.VolumeSerializer(row).data, status=201)


class VolumeDetailView(ApiView):
    @extend_schema(summary="One volume", responses={200: s.VolumeSerializer, **ERRORS})
    def get(self, request, ws: str, name: str):
        volume, rights = access.volume(request, ws, name)
        return Response(s.VolumeSerializer(volume_row(volume, rights)).data)

    @extend_schema(
        summary="Move a volume to the workspace's trash (owner, writers, admins); refused while leased. "
                "It is restorable for VOLUMES_TRASH_DAYS; DELETE trash/{name}/ removes it at once",
        responses={204: None, **ERRORS, **CONFLICT},
    )
    def delete(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="delete")
        volume_services.volume_delete(volume, user=request.user)
        return Response(status=204)


class DuplicateView(ApiView):
    @extend_schema(
        summary="A new volume (you own it) with the files of any kept generation of this one, copied inside the "
                "storage; its history starts with a note of where it came from. Needs read access",
        request=s.DuplicateSerializer,
        responses={201: s.VolumeSerializer, 409: OpenApiResponse(description="Name taken"), **ERRORS},
    )
    def post(self, request, ws: str, name: str):
        source, _ = access.volume(request, ws, name)
        data = validated(s.DuplicateSerializer, request.data)
        copy = volume_services.volume_duplicate(source, data["name"], request.user, data.get("generation"))
        return Response(s.VolumeSerializer(volume_row(copy, permissions.access(request.user, copy))).data, status=201)


class QuotaView(ApiView):
    @extend_schema(
        summary="Set (or with null clear) the volume's cap on its storage, history included (owner and admins). "
                "A cap below what it stores is allowed: its next commit that adds data is refused",
        request=s.QuotaSerializer, responses={200: s.VolumeSerializer, **ERRORS},
    )
    def put(self, request, ws: str, name: str):
        volume, rights = access.volume(request, ws, name, need="quota")
        data = validated(s.QuotaSerializer, request.data)
        volume = volume_services.volume_set_quota(volume, data["max_size_bytes"], user=request.user)
        return Response(s.VolumeSerializer(volume_row(volume, rights)).data)


# Trash -------------------------------------------------------------------------------------------

class TrashListView(ApiView):
    @extend_schema(summary="Volumes in the workspace's trash you may restore (admins: all; others: their own "
                           "and those they deleted)", responses={200: s.TrashedVolumeSerializer(many=True), **ERRORS})
    def get(self, request, ws: str):
        workspace, _ = access.workspace(request, ws)
        return Response(s.TrashedVolumeSerializer(volume_services.trash_list(request.user, workspace), many=True).data)


class TrashDetailView(ApiView):
    @extend_schema(summary="Delete a trashed volume for good: every file, its history and its objects in storage, "
                           "now", responses={204: None, **ERRORS})
    def delete(self, request, ws: str, name: str):
        volume = volume_services.trashed_volume_for(request.user, ws, name)
        volume_services.volume_purge(volume, user=request.user)
        return Response(status=204)


class TrashRestoreView(ApiView):
    @extend_schema(summary="Restore a trashed volume with all its files and history", request=None,
                   responses={200: s.VolumeSerializer, **ERRORS})
    def post(self, request, ws: str, name: str):
        volume = volume_services.trashed_volume_for(request.user, ws, name)
        volume = volume_services.volume_restore(volume, user=request.user)
        return Response(s.VolumeSerializer(volume_row(volume, permissions.access(request.user, volume))).data)
