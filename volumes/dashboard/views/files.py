"""A volume's file browser and reading files: download, zip, inline images, previews."""
from __future__ import annotations

import mimetypes
import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import content_disposition_header, urlencode
from django.views.decorators.http import require_GET

from ... import conf, permissions, selectors
from ...engine.manifest import DIR, FILE, LINK
from ...exceptions import IntegrityError, VolumesError
from ...models import Volume, VolumeCommit
from ...services import files
from .common import _fragment, _lease_context, _page, _volume, dashboard_view


PAGE_SIZE = 200


EDIT_MAX_BYTES = 256 * 1024


PREVIEW_MAX_BYTES = 256 * 1024


IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/x-icon", "image/svg+xml",
               "image/avif"}


TEXT_EXTENSIONS = {".txt", ".md", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini", ".cfg",
                   ".log", ".py", ".sh", ".ts", ".js", ".sql", ".xml", ".html", ".css", ".rs", ".go", ".c", ".h"}


@dataclass
class FileRow:
    entry: Any
    name: str
    mtime: datetime | None
    commit: VolumeCommit | None
    job_url: str = ""

    # Formatted here with strftime: Django's date filter cost most of a 200-row page.
    @property
    def mtime_text(self) -> str:
        return self.mtime.strftime("%Y-%m-%d %H:%M") if self.mtime else ""

    @property
    def mtime_title(self) -> str:
        return self.mtime.strftime("%Y-%m-%d %H:%M:%S UTC") if self.mtime else ""

    @property
    def commit_title(self) -> str:
        c = self.commit
        return f"generation {c.generation}, {c.created_at:%Y-%m-%d %H:%M:%S} UTC" if c else ""

    @property
    def is_dir(self) -> bool:
        return self.entry.type == DIR

    @property
    def is_link(self) -> bool:
        return self.entry.type == LINK

    @property
    def is_file(self) -> bool:
        return self.entry.type == FILE

    @property
    def previewable(self) -> bool:
        return self.is_file and _preview_kind(self.name) is not None

    @property
    def editable(self) -> bool:
        return self.is_file and self.entry.size <= EDIT_MAX_BYTES and _preview_kind(self.name) == "text"


def _preview_kind(name: str) -> str | None:
    mime = mimetypes.guess_type(name)[0] or ""
    if mime in IMAGE_TYPES:
        return "image"
    if mime.startswith("text/") or posixpath.splitext(name)[1].lower() in TEXT_EXTENSIONS or "." not in name:
        return "text"
    return None


CRUMBS_HEAD, CRUMBS_TAIL = 2, 5


FILE_SORTS = {"name": lambda e: e.path.lower(), "size": lambda e: e.size, "date": lambda e: e.mtime_ns}


def _crumbs(path: str) -> list[tuple[str, str | None]]:
    """(label, path) per folder of `path`; a deep path keeps its first and last few, with one
    ("…", None) between, so the page grows with the path's length, not with its depth squared."""
    parts = path.split("/") if path else []
    shown = range(len(parts))
    if len(parts) > CRUMBS_HEAD + CRUMBS_TAIL + 1:
        shown = [*range(CRUMBS_HEAD), -1, *range(len(parts) - CRUMBS_TAIL, len(parts))]
    return [("…", None) if i < 0 else (parts[i], "/".join(parts[: i + 1])) for i in shown]


def _files_context(volume: Volume, access, folder: str, page: str | int | None, sort: str = "name",
                   q: str = "") -> dict:
    folder = folder.strip("/")
    entries = files.list_folder(volume, folder)
    q = q.strip()[:255]
    if q:
        entries = [e for e in entries if q.lower() in e.path.rpartition("/")[2].lower()]
    if sort.lstrip("-") not in FILE_SORTS:
        sort = "name"
    key = FILE_SORTS[sort.lstrip("-")]
    entries.sort(key=key, reverse=sort.startswith("-"))
    entries.sort(key=lambda e: e.type != DIR)  # folders stay first (the sort is stable)
    columns = []
    for col, label, num in (("name", "Name", False), ("size", "Size", True), ("date", "Modified", False)):
        state = "asc" if sort == col else "desc" if sort == f"-{col}" else None
        columns.append({"label": label, "num": num, "state": state, "next": f"-{col}" if state == "asc" else col})
    paginator = Paginator(entries, PAGE_SIZE)
    page_obj = paginator.get_page(page)
    gens = {e.gen for e in page_obj.object_list if e.gen}
    commits = selectors.volume_commits_by_generation(volume, gens)
    job_urls = {c.generation: reverse("job", args=[volume.workspace_id, c.job_id])
                for c in commits.values() if c.job_id}
    rows = [
        FileRow(e, e.path.rpartition("/")[2],
                datetime.fromtimestamp(e.mtime_ns / 1e9, tz=dt_timezone.utc) if e.mtime_ns else None,
                commits.get(e.gen), job_urls.get(e.gen, ""))
        for e in page_obj.object_list
    ]
    return {"volume": volume, "access": access, "folder": folder, "crumbs": _crumbs(folder),
            "parent": folder.rpartition("/")[0] if folder else None, "rows": rows, "page": page_obj,
            "count": paginator.count, "max_file_size": conf.max_file_size(), "sort": sort, "q": q,
            "sort_columns": columns, "list_query": urlencode({k: v for k, v in (("sort", sort if sort != "name" else ""),
                                                                           ("q", q)) if v}),
            "edit_max": EDIT_MAX_BYTES, **_lease_context(volume)}


@require_GET
@dashboard_view
def volume_detail(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name)
    if _fragment(request) and request.htmx.target == "volume-meta":
        return render(request, "volumes/_volume_meta.html",
                      {"ws": workspace, "volume": volume, "access": access, "shares": permissions.shares_of(volume)})
    try:
        ctx = _files_context(volume, access, request.GET.get("path", ""), request.GET.get("page"),
                             request.GET.get("sort", "name"), request.GET.get("q", ""))
    except IntegrityError as exc:  # a generation an old version left damaged: say so and offer the repair
        if _fragment(request):
            raise
        ctx = {"volume": volume, "access": access, "damaged": exc.message, "tab": "files",
               "shares": permissions.shares_of(volume)}
        return _page(request, "volumes/volume_files.html", ctx, workspace, role, "volumes")
    if _fragment(request):
        return render(request, "volumes/_files.html", {**ctx, "ws": workspace})
    ctx.update({"tab": "files", "shares": permissions.shares_of(volume)})
    return _page(request, "volumes/volume_files.html", ctx, workspace, role, "volumes")


def _file_entry(volume: Volume, path: str, generation: str | None = None):
    entry = files.entry_at(volume, path, int(generation) if generation and generation.isdigit() else None)
    if entry.type != FILE:
        raise VolumesError(f"{path!r} is a {'folder' if entry.type == DIR else 'symlink'}, not a file")
    return entry


@require_GET
@dashboard_view
def file_download(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """A file, or with ?gen= the version a kept generation had."""
    workspace, role, volume, access = _volume(request, ws_id, name)
    entry = _file_entry(volume, request.GET.get("path", ""), request.GET.get("gen"))
    response = StreamingHttpResponse(files.open_file(volume, entry), content_type="application/octet-stream")
    response["Content-Length"] = str(entry.size)
    response["Content-Disposition"] = content_disposition_header(True, entry.path.rpartition("/")[2])
    response["Content-Security-Policy"] = "sandbox"  # never run as a page of ours, even if opened inline
    return response


@require_GET
@dashboard_view
def folder_zip(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """A folder (?path=) or the whole volume as a zip, streamed file by file."""
    from ...services import archive

    workspace, role, volume, access = _volume(request, ws_id, name)
    folder = request.GET.get("path", "").strip("/")
    generation, stream = archive.pinned_zip(volume, folder)  # a missing folder is a 404 before any byte
    response = StreamingHttpResponse(stream, content_type="application/zip")
    label = f"{volume.name}-{folder.rpartition('/')[2]}" if folder else f"{volume.name}-gen{generation}"
    response["Content-Disposition"] = content_disposition_header(True, f"{label}.zip")
    response["Content-Security-Policy"] = "sandbox"
    response["X-Accel-Buffering"] = "no"  # a proxy passes it on as it comes
    return response


@require_GET
@dashboard_view
def file_raw(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """An image inline, for the preview; sandboxed so an SVG can never run script."""
    workspace, role, volume, access = _volume(request, ws_id, name)
    entry = _file_entry(volume, request.GET.get("path", ""))
    mime = mimetypes.guess_type(entry.path)[0]
    if mime not in IMAGE_TYPES:
        raise VolumesError("only images are shown inline; download the file instead")
    response = StreamingHttpResponse(files.open_file(volume, entry), content_type=mime)
    response["Content-Length"] = str(entry.size)
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
    response["Cache-Control"] = "private, max-age=60"
    return response


@require_GET
@dashboard_view
def file_preview(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name)
    entry = _file_entry(volume, request.GET.get("path", ""))
    filename = entry.path.rpartition("/")[2]
    kind = _preview_kind(filename) or "text"
    ctx: dict[str, Any] = {"volume": volume, "entry": entry, "filename": filename, "kind": kind,
                           "cap": PREVIEW_MAX_BYTES}
    if kind == "text":
        data = b"".join(files.open_file(volume, entry, 0, min(entry.size, PREVIEW_MAX_BYTES))) if entry.size else b""
        if b"\x00" in data[:8192]:
            ctx["binary"] = True
        else:
            ctx["text"] = data.decode("utf-8", errors="replace")
        ctx["truncated"] = entry.size > PREVIEW_MAX_BYTES
    template = "volumes/_preview.html" if _fragment(request) else "volumes/dialog_page.html"
    return _page(request, template, {**ctx, "fragment": "volumes/_preview.html", "title": filename},
                 workspace, role, "volumes")
