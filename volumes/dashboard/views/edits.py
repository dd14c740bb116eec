"""Writing files from the browser: upload, new folder, move, delete, bulk actions, the text editor.
Every write commits a generation through services.files or services.bulk."""
from __future__ import annotations

import posixpath
from typing import Any

from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import content_disposition_header, urlencode
from django.views.decorators.http import require_POST, require_http_methods
from django_htmx.http import reswap, trigger_client_event

from ...api.http import body_stream
from ...engine.manifest import DIR
from ...exceptions import LengthRequired, VolumesError, public_error
from ...permissions import sees_storage
from ...services import files
from .. import forms
from .common import _dialog, _toast, _volume, dashboard_view
from .files import EDIT_MAX_BYTES, _file_entry


def _files_changed(request, workspace, volume, folder: str, message: str) -> HttpResponse:
    """After a write: close the dialog and refresh the file browser (htmx), else back to the folder."""
    if request.htmx:
        response = reswap(HttpResponse(), "none")
        trigger_client_event(response, "closeModal")
        trigger_client_event(response, "files-refresh")
        return _toast(response, message)
    messages.success(request, message)
    url = reverse("volume", args=[workspace.pk, volume.name])
    return redirect(f"{url}?{urlencode({'path': folder})}" if folder else url)


@require_POST
@dashboard_view
def file_upload(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """Upload files into a folder: multipart from the browser (one generation for the batch),
    or a raw request body with `?path=` (streamed, for scripts)."""
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    try:
        if request.content_type == "application/x-tar":
            # A folder from the browser: its whole tree in one tar stream, one generation.
            generation, count = files.file_put_tar(volume, body_stream(request), request.GET.get("folder", ""),
                                                   user=request.user)
            return JsonResponse({"generation": generation, "message": f"Uploaded {count} file{'s' if count != 1 else ''}"
                                                                      f" (generation {generation})."})
        if request.content_type != "multipart/form-data":
            path = request.GET.get("path", "")
            generation = files.file_put(volume, path, body_stream(request), user=request.user)
            return JsonResponse({"generation": generation, "message": f"Uploaded {path}."})
        if request.META.get("HTTP_TRANSFER_ENCODING") and not request.META.get("CONTENT_LENGTH", "").strip():
            # Django parses a form only up to its Content-Length: a chunked one would look empty.
            raise LengthRequired("send the upload with a Content-Length (not 'Transfer-Encoding: chunked')")
    except VolumesError as exc:
        message = public_error(exc, lambda: sees_storage(request.user, ws_id))[0]
        return JsonResponse({"error": exc.code, "detail": message}, status=exc.status)
    except SuspiciousOperation as exc:
        return JsonResponse({"error": "invalid_path", "detail": f"invalid file name: {exc}"}, status=400)
    folder = request.POST.get("folder", "").strip("/")
    uploads = request.FILES.getlist("files")
    relpaths = request.POST.getlist("relpath")
    if not uploads:
        return JsonResponse({"error": "invalid", "detail": "Choose one or more files to upload."}, status=400)
    items = []
    for i, upload in enumerate(uploads):
        rel = relpaths[i] if i < len(relpaths) and relpaths[i] else upload.name
        items.append((posixpath.join(folder, rel.lstrip("/")) if folder else rel.lstrip("/"), upload))
    try:
        generation = files.file_put_many(volume, items, user=request.user)
    except VolumesError as exc:
        message = public_error(exc, lambda: sees_storage(request.user, ws_id))[0]
        return JsonResponse({"error": exc.code, "detail": message}, status=exc.status)
    except SuspiciousOperation as exc:
        return JsonResponse({"error": "invalid_path", "detail": f"invalid file name: {exc}"}, status=400)
    count = len(items)
    return JsonResponse({"generation": generation,
                         "message": f"Uploaded {count} file{'s' if count != 1 else ''} (generation {generation})."})


@require_http_methods(["GET", "POST"])
@dashboard_view
def folder_new(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    form = forms.FolderForm(request.POST or None, initial={"folder": request.GET.get("folder", "")})
    if request.method == "POST" and form.is_valid():
        folder = form.cleaned_data["folder"].strip("/")
        path = posixpath.join(folder, form.cleaned_data["name"]) if folder else form.cleaned_data["name"]
        try:
            files.folder_create(volume, path, user=request.user)
        except (VolumesError, SuspiciousOperation) as exc:
            form.add_error("name", getattr(exc, "message", str(exc)))
        else:
            return _files_changed(request, workspace, volume, folder, f"Folder {path} created.")
    status = 422 if request.method == "POST" else 200
    return _dialog(request, workspace, role, "volumes/_folder_new.html", {"form": form, "volume": volume},
                   "New folder", status)


@require_http_methods(["GET", "POST"])
@dashboard_view
def file_move(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    src = request.GET.get("path", "")
    form = forms.MoveForm(request.POST or None, initial={"src": src, "dst": src,
                                                         "folder": src.rpartition("/")[0]})
    if request.method == "POST" and form.is_valid():
        src, dst = form.cleaned_data["src"], form.cleaned_data["dst"]
        try:
            files.file_move(volume, src, dst, user=request.user)
        except (VolumesError, SuspiciousOperation) as exc:
            form.add_error("dst", getattr(exc, "message", str(exc)))
        else:
            return _files_changed(request, workspace, volume, form.cleaned_data["folder"],
                                  f"Moved {src} to {dst}.")
    status = 422 if request.method == "POST" else 200
    return _dialog(request, workspace, role, "volumes/_move.html",
                   {"form": form, "volume": volume, "src": form["src"].value()}, "Rename or move", status)


@require_http_methods(["GET", "POST"])
@dashboard_view
def file_delete(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    path = (request.POST.get("path") if request.method == "POST" else request.GET.get("path")) or ""
    entry = files.entry_at(volume, path)
    if request.method == "POST":
        files.file_delete(volume, entry.path, user=request.user)
        return _files_changed(request, workspace, volume, entry.path.rpartition("/")[0],
                              f"Deleted {entry.path}.")
    inside = 0
    if entry.type == DIR:
        prefix = entry.path + "/"
        inside = sum(1 for p in files.manifest_of(volume).entries if p.startswith(prefix))
    return _dialog(request, workspace, role, "volumes/_file_delete.html",
                   {"volume": volume, "entry": entry, "inside": inside}, "Delete")


@require_http_methods(["GET", "POST"])
@dashboard_view
def files_bulk(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """The selection of the file browser: delete or move (POST, one generation), or zip (GET)."""
    from ...services import archive, bulk

    if request.method == "GET":
        workspace, role, volume, access = _volume(request, ws_id, name)
        folder = request.GET.get("folder", "").strip("/")
        chosen = bulk._selection(request.GET.getlist("sel"))
        _, stream = archive.pinned_zip(volume, folder, pick=lambda entries: [
            e for e in entries if any(e.path == c or e.path.startswith(c + "/") for c in chosen)])
        response = StreamingHttpResponse(stream, content_type="application/zip")
        response["Content-Disposition"] = content_disposition_header(True, f"{volume.name}-selection.zip")
        response["Content-Security-Policy"] = "sandbox"
        return response
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    chosen, folder = request.POST.getlist("sel"), request.POST.get("folder", "").strip("/")
    if request.POST.get("action") == "move":
        dest = request.POST.get("dest", "").strip().strip("/")
        bulk.entries_move(volume, chosen, dest, user=request.user)
        message = f"Moved {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'} to {dest or volume.name}."
    else:
        bulk.entries_delete(volume, chosen, user=request.user)
        message = f"Deleted {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'}."
    return _files_changed(request, workspace, volume, folder, message)


@require_http_methods(["GET", "POST"])
@dashboard_view
def file_edit(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """Edit a small UTF-8 text file in place; saving commits a generation like any dashboard write."""
    from ...services import bulk

    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    path = (request.POST.get("path") if request.method == "POST" else request.GET.get("path")) or ""
    entry = _file_entry(volume, path)
    if entry.size > EDIT_MAX_BYTES:
        raise VolumesError(f"only files up to {EDIT_MAX_BYTES // 1024} KB are edited here; download it instead")
    ctx: dict[str, Any] = {"volume": volume, "entry": entry, "error": ""}
    status = 200
    if request.method == "POST":
        text = request.POST.get("text", "").replace("\r\n", "\n")
        try:
            bulk.text_save(volume, entry.path, text, request.POST.get("hash", ""), user=request.user)
        except VolumesError as exc:
            ctx.update({"error": exc.message, "text": text, "hash": request.POST.get("hash", "")})
            status = exc.status if exc.status != 409 else 409
        else:
            return _files_changed(request, workspace, volume, entry.path.rpartition("/")[0], f"Saved {entry.path}.")
    else:
        data = b"".join(files.open_file(volume, entry)) if entry.size else b""
        try:
            if b"\x00" in data:
                raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL")
            ctx.update({"text": data.decode("utf-8"), "hash": entry.hash})
        except UnicodeDecodeError:
            raise VolumesError(f"{entry.path!r} is not UTF-8 text; download it to edit it")
    return _dialog(request, workspace, role, "volumes/_file_edit.html", ctx, f"Edit {entry.path}", status)
