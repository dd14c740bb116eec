"""The REST API for people and scripts: volumes, files, shares, history and jobs of a workspace.

Each view: find the object and the caller's rights (`access`), validate input with a
serializer, call one service, serialize the output. Errors are VolumesErrors, rendered
as JSON by `volumes.api.errors.exception_handler`.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework import serializers as drf
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import conf, permissions, selectors
from ..exceptions import Conflict, InvalidPath, LimitExceeded, NotFound, VolumesError
from ..selectors import VolumeRow
from ..services import files, jobs
from ..services.agent import can_run_agents
from ..services import volumes as volume_services
from . import access
from . import serializers as s
from .http import RawBodyParser, body_stream, file_response

ERRORS = {
    400: OpenApiResponse(description="Invalid input or path"),
    401: OpenApiResponse(description="Not authenticated"),
    403: OpenApiResponse(description="No right to do this"),
    404: OpenApiResponse(description="Not found (or not a member of the workspace)"),
}
CONFLICT = {409: OpenApiResponse(description="The volume is in use (leased); the body names the holder")}


class ApiView(APIView):
    # Token first, so an anonymous request gets 401 with `WWW-Authenticate: Token`.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]


class Pagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


PAGE_PARAMETERS = [OpenApiParameter("limit", int, description="Rows per page (at most 1000)"),
                   OpenApiParameter("offset", int, description="Rows to skip")]


def _page_of(serializer_class, name: str):
    """The schema of what `_paginate` returns: {count, next, previous, results: [...]}."""
    return inline_serializer(name, {"count": drf.IntegerField(), "next": drf.URLField(allow_null=True),
                                    "previous": drf.URLField(allow_null=True), "results": serializer_class(many=True)})


def _paginate(view: APIView, request, queryset, serializer_class):
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def _row(volume, rights) -> VolumeRow:
    return VolumeRow(volume, rights, selectors.volume_is_leased(volume))


# Workspaces --------------------------------------------------------------------------------------

class WorkspaceListView(ApiView):
    @extend_schema(
        summary="The workspaces you are a member of, with your role and whether you may run agent workers",
        tags=["workspaces"],
        responses={200: inline_serializer("WorkspaceRow", {
            "id": drf.CharField(), "name": drf.CharField(), "role": drf.CharField(),
            "can_run_agents": drf.BooleanField()}, many=True), **ERRORS},
    )
    def get(self, request):
        return Response([
            {"id": ws.pk, "name": ws.name, "role": permissions.role(request.user, ws),
             "can_run_agents": can_run_agents(request.user, ws)}
            for ws in selectors.workspaces_for_user(request.user)
        ])


# Volumes -----------------------------------------------------------------------------------------

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
        data = _valid(s.VolumeCreateSerializer, request.data)
        volume = volume_services.volume_create(workspace, data["name"], owner=request.user)
        return Response(s.VolumeSerializer(_row(volume, permissions.access(request.user, volume))).data, status=201)


class VolumeDetailView(ApiView):
    @extend_schema(summary="One volume", responses={200: s.VolumeSerializer, **ERRORS})
    def get(self, request, ws: str, name: str):
        volume, rights = access.volume(request, ws, name)
        return Response(s.VolumeSerializer(_row(volume, rights)).data)

    @extend_schema(
        summary="Delete a volume and all its files (owner, writers, admins); refused while leased",
        responses={204: None, **ERRORS, **CONFLICT},
    )
    def delete(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="delete")
        volume_services.volume_delete(volume, user=request.user)
        return Response(status=204)


# Files -------------------------------------------------------------------------------------------

def _folder(request, volume, path: str) -> Response:
    """A folder's entries; all of them, or one page with `?limit=` / `?offset=` (`count` is always the total)."""
    entries = files.list_folder(volume, path)
    count = len(entries)
    params = request.query_params
    if "limit" in params or "offset" in params:
        paginator = Pagination()
        limit, offset = paginator.get_limit(request), paginator.get_offset(request)
        entries = entries[offset:offset + limit]
    return Response(s.FolderSerializer(
        {"path": path, "generation": volume.generation, "count": count, "entries": entries}).data)


class FolderListView(ApiView):
    """`files/` (the root) and `files/{dir}/`: list a folder."""

    @extend_schema(operation_id="volume_files_root", summary="List the root folder of a volume", parameters=PAGE_PARAMETERS, responses={200: s.FolderSerializer, **ERRORS})
    def get(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name)
        return _folder(request, volume, "")


class FileView(ApiView):
    """`files/{path}`: download, upload or delete; with a trailing slash, list the folder."""

    parser_classes = [RawBodyParser]

    @extend_schema(
        operation_id="volume_file_download",
        summary="Download a file (Range supported), or list a folder when the path ends with /",
        parameters=PAGE_PARAMETERS,
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (200, "application/json"): s.FolderSerializer,
            (206, "application/octet-stream"): OpenApiTypes.BINARY,
            (416, "application/json"): OpenApiResponse(description="Range not satisfiable"),
            **ERRORS,
        },
    )
    def get(self, request, ws: str, name: str, path: str):
        volume, _ = access.volume(request, ws, name)
        if path.endswith("/"):
            return _folder(request, volume, access.clean_path(path.rstrip("/")))
        entry = files.entry_at(volume, access.clean_path(path))
        if entry.type != "file":
            raise InvalidPath(
                f"{entry.path!r} is a {'folder' if entry.type == 'dir' else 'symlink'}, not a file"
                + ("; list it with a trailing slash" if entry.type == "dir" else "")
            )
        return file_response(request, volume, entry)

    @extend_schema(
        summary="Upload a file (the body is the file's bytes); commits a new generation",
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: s.EntrySerializer, 201: s.EntrySerializer,
                   413: OpenApiResponse(description="Over the per-file limit"), **ERRORS, **CONFLICT},
    )
    def put(self, request, ws: str, name: str, path: str):
        volume, _ = access.volume(request, ws, name, need="write")
        if path.endswith("/"):
            raise InvalidPath("a file path cannot end with '/'; to make a folder, POST to folders/")
        path = access.clean_path(path)
        limit = conf.max_file_size()
        length = request.META.get("CONTENT_LENGTH") or ""
        if limit is not None and length.isdigit() and int(length) > limit:
            raise LimitExceeded(f"the file is {int(length):,} bytes, over the limit of {limit:,} bytes per file")
        existed = path in files.manifest_of(volume).entries
        files.file_put(volume, path, body_stream(request), user=request.user)
        volume.refresh_from_db()
        return Response(s.EntrySerializer(files.entry_at(volume, path)).data, status=200 if existed else 201)

    @extend_schema(
        summary="Delete a file, link or folder (with its contents); commits a new generation",
        request=None, responses={200: s.ChangeSerializer, **ERRORS, **CONFLICT},
    )
    def delete(self, request, ws: str, name: str, path: str):
        volume, _ = access.volume(request, ws, name, need="write")
        path = access.clean_path(path[:-1] if path.endswith("/") else path)
        generation = files.file_delete(volume, path, user=request.user)
        return Response(s.ChangeSerializer({"generation": generation, "path": path}).data)


class FolderCreateView(ApiView):
    @extend_schema(summary="Make a folder (and its parents)", request=s.FolderCreateSerializer,
                   responses={201: s.ChangeSerializer, **ERRORS, **CONFLICT})
    def post(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="write")
        path = _valid(s.FolderCreateSerializer, request.data)["path"]
        path = access.clean_path(path[:-1] if path.endswith("/") else path)
        generation = files.folder_create(volume, path, user=request.user)
        return Response(s.ChangeSerializer({"generation": generation, "path": path}).data, status=201)


class MoveView(ApiView):
    @extend_schema(summary="Move or rename a file, link or folder", request=s.MoveSerializer,
                   responses={200: s.ChangeSerializer, **ERRORS, **CONFLICT})
    def post(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="write")
        data = _valid(s.MoveSerializer, request.data)
        src, dst = access.clean_path(data["src"]), access.clean_path(data["dst"])
        generation = files.file_move(volume, src, dst, user=request.user)
        return Response(s.ChangeSerializer({"generation": generation, "path": dst}).data)


# Shares ------------------------------------------------------------------------------------------

def _principal(workspace, data: dict):
    """The workspace member or group a share names; NotFound for anyone outside the workspace."""
    if data.get("user"):
        user = get_user_model().objects.filter(
            memberships__workspace=workspace, username__iexact=data["user"]
        ).first()
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
                   request=s.ShareGrantSerializer, responses={200: s.ShareSerializer(many=True), **ERRORS})
    def post(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="share")
        data = _valid(s.ShareGrantSerializer, request.data)
        permissions.set_share(volume, _principal(volume.workspace, data), data["access"])
        return _shares(volume)

    @extend_schema(
        summary="Remove a user's or group's share (body or query: user= / group=)",
        parameters=[OpenApiParameter("user", str), OpenApiParameter("group", str)],
        request=s.ShareRevokeSerializer, responses={200: s.ShareSerializer(many=True), **ERRORS},
    )
    def delete(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="share")
        data = _valid(s.ShareRevokeSerializer, request.data or request.query_params)
        permissions.set_share(volume, _principal(volume.workspace, data), None)
        return _shares(volume)


# History -----------------------------------------------------------------------------------------

class HistoryView(ApiView):
    @extend_schema(summary="Generations of a volume, newest first: who, when, what changed",
                   operation_id="w_volumes_history_list", parameters=PAGE_PARAMETERS,
                   responses={200: _page_of(s.CommitSerializer, "CommitPage"), **ERRORS})
    def get(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name)
        return _paginate(self, request, selectors.volume_history(volume), s.CommitSerializer)


class RestoreView(ApiView):
    @extend_schema(summary="Commit an older generation's files as the newest generation",
                   request=None, responses={200: s.ChangeSerializer, **ERRORS, **CONFLICT})
    def post(self, request, ws: str, name: str, generation: int):
        volume, _ = access.volume(request, ws, name, need="write")
        new = files.generation_restore(volume, generation, user=request.user)
        return Response(s.ChangeSerializer({"generation": new}).data)


# Jobs --------------------------------------------------------------------------------------------

class JobListView(ApiView):
    @extend_schema(summary="Jobs: admins see all of the workspace, members their own",
                   operation_id="w_jobs_list", parameters=PAGE_PARAMETERS,
                   responses={200: _page_of(s.JobSerializer, "JobPage"), **ERRORS})
    def get(self, request, ws: str):
        workspace, _ = access.workspace(request, ws)
        queryset = selectors.jobs_for_user(request.user, workspace).prefetch_related("mounts")
        return _paginate(self, request, queryset, s.JobSerializer)

    @extend_schema(summary="Run a script as a job", request=s.JobCreateSerializer,
                   responses={201: s.JobDetailSerializer, **ERRORS})
    def post(self, request, ws: str):
        workspace, _ = access.workspace(request, ws)
        data = _valid(s.JobCreateSerializer, request.data)
        job = jobs.job_submit(workspace, request.user, data["language"], data["content"], data["args"])
        return Response(s.JobDetailSerializer(job).data, status=201)


class JobDetailView(ApiView):
    @extend_schema(summary="A job with its status, log, result and per-volume sync figures",
                   responses={200: s.JobDetailSerializer, **ERRORS})
    def get(self, request, ws: str, job_id: int):
        _, job = access.job(request, ws, job_id)
        return Response(s.JobDetailSerializer(job).data)


class JobCancelView(ApiView):
    @extend_schema(summary="Cancel a job: a queued job never starts; a running one is stopped",
                   request=None, responses={200: s.JobDetailSerializer, 409: OpenApiResponse(), **ERRORS})
    def post(self, request, ws: str, job_id: int):
        _, job = access.job(request, ws, job_id)
        if job.is_finished:
            raise Conflict(f"job {job.pk} has already finished ({job.status}); there is nothing to cancel")
        jobs.job_cancel(job)
        job.refresh_from_db()
        return Response(s.JobDetailSerializer(job).data)


def _valid(serializer_class, data) -> dict:
    """Validated input, or a 400 naming the fields."""
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise VolumesError(f"invalid input: {_describe(serializer.errors)}", fields=_describe(serializer.errors))
    return serializer.validated_data


def _describe(errors) -> str:
    if isinstance(errors, dict):
        return "; ".join(f"{k}: {_describe(v)}" if k != "non_field_errors" else _describe(v)
                         for k, v in errors.items())
    if isinstance(errors, list):
        return " ".join(_describe(e) for e in errors)
    return str(errors)

