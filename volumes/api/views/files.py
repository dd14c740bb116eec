"""Files and folders of a volume: list, download, upload (one file or a tar stream), make, move, delete."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers as drf
from rest_framework.response import Response

from ... import conf
from ...engine.commits import file_over_limit
from ...exceptions import InvalidPath
from ...storage.keys import clean_path
from ...services import files
from .. import access
from .. import serializers as s
from ..http import RawBodyParser, body_stream, file_response
from .common import CONFLICT, ERRORS, PAGE_PARAMETERS, ApiView, Pagination, validated


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
            # A file comes with the type its name suggests (text/plain, image/png...), else octet-stream.
            (200, "*/*"): OpenApiTypes.BINARY,
            (200, "application/json"): s.FolderSerializer,
            (206, "*/*"): OpenApiTypes.BINARY,
            (416, "application/json"): OpenApiResponse(description="Range not satisfiable"),
            **ERRORS,
        },
    )
    def get(self, request, ws: str, name: str, path: str):
        volume, _ = access.volume(request, ws, name)
        if path.endswith("/"):
            return _folder(request, volume, clean_path(path.rstrip("/")))
        Pagination().get_limit(request), Pagination().get_offset(request)  # a file has no pages, but no bad values
        entry = files.entry_at(volume, clean_path(path))
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
        path = clean_path(path)
        limit = conf.max_file_size()
        length = request.META.get("CONTENT_LENGTH") or ""
        if limit is not None and length.isdigit() and int(length) > limit:
            raise file_over_limit(limit, path)
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
        path = clean_path(path[:-1] if path.endswith("/") else path)
        generation = files.file_delete(volume, path, user=request.user)
        return Response(s.ChangeSerializer({"generation": generation, "path": path}).data)


class TarUploadView(ApiView):
    """`upload/`: many files as one generation (what `volume put` of a folder sends)."""

    parser_classes = [RawBodyParser]

    @extend_schema(
        operation_id="volume_upload_tar",
        summary="Upload the regular files of a tar stream (the body; any content type) as one generation, "
                "under ?folder= (default: the root)",
        parameters=[OpenApiParameter("folder", str, description="Folder inside the volume to put the files under")],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={201: inline_serializer("TarUploadResult", {"generation": drf.IntegerField(),
                                                              "files": drf.IntegerField()}),
                   413: OpenApiResponse(description="A file over the per-file limit"), **ERRORS, **CONFLICT},
    )
    def post(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="write")
        folder = request.query_params.get("folder", "").strip("/")
        folder = clean_path(folder) if folder else ""
        generation, count = files.file_put_tar(volume, body_stream(request), folder, user=request.user)
        return Response({"generation": generation, "files": count}, status=201)


class FolderCreateView(ApiView):
    @extend_schema(summary="Make a folder (and its parents)", request=s.FolderCreateSerializer,
                   responses={201: s.ChangeSerializer, **ERRORS, **CONFLICT})
    def post(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="write")
        path = validated(s.FolderCreateSerializer, request.data)["path"]
        path = clean_path(path[:-1] if path.endswith("/") else path)
        generation = files.folder_create(volume, path, user=request.user)
        return Response(s.ChangeSerializer({"generation": generation, "path": path}).data, status=201)


class MoveView(ApiView):
    @extend_schema(summary="Move or rename a file, link or folder", request=s.MoveSerializer,
                   responses={200: s.ChangeSerializer, **ERRORS, **CONFLICT})
    def post(self, request, ws: str, name: str):
        volume, _ = access.volume(request, ws, name, need="write")
        data = validated(s.MoveSerializer, request.data)
        src, dst = clean_path(data["src"]), clean_path(data["dst"])
        generation = files.file_move(volume, src, dst, user=request.user)
        return Response(s.ChangeSerializer({"generation": generation, "path": dst}).data)
