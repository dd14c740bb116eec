"""The dashboard: server-rendered pages and their htmx fragments.

Every view starts with one permission helper (404 for what the caller may not see, 403 for
what they may see but not do), then calls one service or selector. An htmx request gets
only the fragment (an included `_*.html` template); a plain request gets the whole page.
"""
from __future__ import annotations

import functools
import json
import mimetypes
import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Any, Callable

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import SuspiciousOperation
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header, urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, reswap, trigger_client_event

from .. import conf, permissions, selectors
from ..engine import leases
from ..engine.manifest import DIR, FILE, LINK, Manifest, diff
from ..exceptions import LeaseHeld, NotFound, PermissionDenied, VolumesError
from ..models import Job, Membership, ObjectStorage, Volume, VolumeCommit, Workspace
from ..services import files, jobs as job_services, volumes as volume_services, workspaces as workspace_services
from ..storage.factory import build_store, storage_url_label
from . import forms

PAGE_SIZE = 200
PREVIEW_MAX_BYTES = 256 * 1024
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/x-icon", "image/svg+xml",
               "image/avif"}
TEXT_EXTENSIONS = {".txt", ".md", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini", ".cfg",
                   ".log", ".py", ".sh", ".ts", ".js", ".sql", ".xml", ".html", ".css", ".rs", ".go", ".c", ".h"}


# Plumbing -------------------------------------------------------------------------------------

def _fragment(request: HttpRequest) -> bool:
    """True when only a fragment is wanted (an htmx request that is not a history restore)."""
    return bool(request.htmx) and not request.htmx.history_restore_request and not request.htmx.boosted


def _toast(response: HttpResponse, message: str, level: str = "success") -> HttpResponse:
    return trigger_client_event(response, "toast", {"level": level, "message": message})


def _error(request: HttpRequest, message: str, status: int) -> HttpResponse:
    """An error the user can act on: a toast for htmx requests, an error page otherwise."""
    if request.htmx:
        return _toast(reswap(HttpResponse(status=status), "none"), message, "error")
    title = {403: "Not allowed", 404: "Not found", 409: "In use", 503: "Storage unavailable"}.get(status, "Error")
    return render(request, "volumes/error.html", _nav(request, {"title": title, "message": message,
                                                                "status": status}), status=status)


def dashboard_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Log-in required (htmx gets a client redirect), and domain errors become clear answers."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            if request.htmx:
                login = f"{reverse('login')}?{urlencode({'next': request.htmx.current_url_abs_path or '/'})}"
                return HttpResponseClientRedirect(login)
            return redirect_to_login(request.get_full_path())
        try:
            return view(request, *args, **kwargs)
        except VolumesError as exc:
            return _error(request, exc.message, exc.status)
        except SuspiciousOperation as exc:
            return _error(request, f"invalid path: {exc}", 400)

    return wrapper


def _nav(request: HttpRequest, ctx: dict, workspace: Workspace | None = None, role: str | None = None,
         section: str = "") -> dict:
    """Context every page needs: the workspace switcher, the current workspace and section."""
    if request.user.is_authenticated:
        ctx.setdefault("workspaces", list(selectors.workspaces_for_user(request.user)))
    ctx.update({"ws": workspace, "role": role, "is_admin": role == Membership.Role.ADMIN, "section": section})
    return ctx


def _page(request, template: str, ctx: dict, workspace=None, role=None, section="", status=200) -> HttpResponse:
    return render(request, template, _nav(request, ctx, workspace, role, section), status=status)


# Permission helpers: one per view -----------------------------------------------------------

def _workspace(request: HttpRequest, ws_id: str) -> tuple[Workspace, str]:
    workspace, role = permissions.workspace_for(request.user, ws_id)
    if request.session.get("workspace") != workspace.pk:
        request.session["workspace"] = workspace.pk  # the home page returns here next time
    return workspace, role


def _admin_workspace(request: HttpRequest, ws_id: str) -> tuple[Workspace, str]:
    workspace, role = _workspace(request, ws_id)
    permissions.require_admin(request.user, workspace)
    return workspace, role


def _volume(request: HttpRequest, ws_id: str, name: str, need: str = "see"):
    """(workspace, role, volume, access); 404 for non-members, 403 without the needed right."""
    workspace, role = _workspace(request, ws_id)
    volume, access = permissions.volume_for(request.user, ws_id, name)
    if need == "write" and not access.can_write:
        raise PermissionDenied(f"you have read-only access to volume {volume.name!r}; ask its owner for write access")
    if need == "delete" and not access.can_delete:
        raise PermissionDenied(f"you may not delete volume {volume.name!r}; its owner, writers and admins can")
    if need == "share" and not access.can_share:
        raise PermissionDenied(f"only the owner of volume {volume.name!r} and workspace admins can share it")
    return workspace, role, volume, access


def _job(request: HttpRequest, ws_id: str, job_id: int) -> tuple[Workspace, str, Job]:
    workspace, role = _workspace(request, ws_id)
    job = selectors.jobs_for_user(request.user, workspace).filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return workspace, role, job


# Home and workspaces --------------------------------------------------------------------------

@dashboard_view
def home(request: HttpRequest) -> HttpResponse:
    workspaces = list(selectors.workspaces_for_user(request.user))
    remembered = request.session.get("workspace")
    for workspace in sorted(workspaces, key=lambda w: w.pk != remembered):
        return redirect("volumes", ws_id=workspace.pk)
    return _page(request, "volumes/home.html", {"workspaces": workspaces})


@dashboard_view
def workspace_home(request: HttpRequest, ws_id: str) -> HttpResponse:
    _workspace(request, ws_id)
    return redirect("volumes", ws_id=ws_id)


# Assets > Volumes -----------------------------------------------------------------------------

def _volume_list_context(request: HttpRequest, workspace: Workspace) -> dict:
    search = request.GET.get("q", "").strip()[:255]
    sort = request.GET.get("sort", "name")
    if sort not in selectors.SORTS:
        sort = "name"
    rows = selectors.volume_list_for_user(request.user, workspace, search, sort)
    holders = {row.volume.pk: leases.current_holder(row.volume.pk) for row in rows if row.leased}
    columns = []
    for key, label, num in (("name", "Name", False), ("size", "Size", True), ("files", "Files", True),
                            ("used", "Last used", False)):
        state = "asc" if sort == key else "desc" if sort == f"-{key}" else None
        columns.append({"label": label, "num": num, "state": state, "next": f"-{key}" if state == "asc" else key})
    return {"rows": [(row, holders.get(row.volume.pk)) for row in rows], "q": search, "sort": sort,
            "columns": columns}


@require_GET
@dashboard_view
def volumes(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _workspace(request, ws_id)
    ctx = _volume_list_context(request, workspace)
    if _fragment(request):
        return render(request, "volumes/_volume_rows.html", {**ctx, "ws": workspace})
    total = Volume.objects.filter(workspace=workspace).count()
    limit = conf.max_volumes_per_workspace()
    ctx.update({"total": total, "limit": limit, "at_limit": limit is not None and total >= limit,
                "edition": conf.edition(), "no_storage": workspace.volume_storage_id is None})
    return _page(request, "volumes/volumes.html", ctx, workspace, role, "volumes")


@require_GET
@dashboard_view
def volume_badges(request: HttpRequest, ws_id: str) -> HttpResponse:
    """Live lease badges of the volume table, swapped in out of band (polled every 2 s)."""
    workspace, role = _workspace(request, ws_id)
    return render(request, "volumes/_lease_badges.html", _volume_list_context(request, workspace))


@require_http_methods(["GET", "POST"])
@dashboard_view
def volume_new(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _workspace(request, ws_id)
    form = forms.VolumeCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                volume = volume_services.volume_create(workspace, form.cleaned_data["name"], owner=request.user)
            except VolumesError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Volume {volume.name} created. Upload files or mount it in a script.")
                url = reverse("volume", args=[workspace.pk, volume.name])
                return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
        status = 422
    limit = conf.max_volumes_per_workspace()
    total = Volume.objects.filter(workspace=workspace).count()
    ctx = {"form": form, "limit": limit, "total": total, "at_limit": limit is not None and total >= limit,
           "edition": conf.edition()}
    template = "volumes/_volume_new.html" if _fragment(request) else "volumes/dialog_page.html"
    return _page(request, template, {**ctx, "fragment": "volumes/_volume_new.html", "title": "New volume"},
                 workspace, role, "volumes", status)


# Volume detail and file browser ---------------------------------------------------------------

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


def _preview_kind(name: str) -> str | None:
    mime = mimetypes.guess_type(name)[0] or ""
    if mime in IMAGE_TYPES:
        return "image"
    if mime.startswith("text/") or posixpath.splitext(name)[1].lower() in TEXT_EXTENSIONS or "." not in name:
        return "text"
    return None


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = path.split("/") if path else []
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def _lease_context(volume: Volume) -> dict:
    holder = leases.current_holder(volume.pk)
    return {"leased": holder is not None, "holder": holder}


def _files_context(volume: Volume, access, folder: str, page: str | int | None) -> dict:
    folder = folder.strip("/")
    entries = files.list_folder(volume, folder)
    paginator = Paginator(entries, PAGE_SIZE)
    page_obj = paginator.get_page(page)
    gens = {e.gen for e in page_obj.object_list if e.gen}
    commits = {c.generation: c for c in VolumeCommit.objects.filter(volume=volume, generation__in=gens)
               .select_related("user", "job")}
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
            "count": paginator.count, "max_file_size": conf.max_file_size(), **_lease_context(volume)}


@require_GET
@dashboard_view
def volume_detail(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name)
    if _fragment(request) and request.htmx.target == "volume-meta":
        return render(request, "volumes/_volume_meta.html",
                      {"ws": workspace, "volume": volume, "shares": permissions.shares_of(volume)})
    ctx = _files_context(volume, access, request.GET.get("path", ""), request.GET.get("page"))
    if _fragment(request):
        return render(request, "volumes/_files.html", {**ctx, "ws": workspace})
    ctx.update({"tab": "files", "shares": permissions.shares_of(volume)})
    return _page(request, "volumes/volume_files.html", ctx, workspace, role, "volumes")


@require_GET
@dashboard_view
def volume_lease(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """The live lease banner (polled); polling stops if the volume disappears or access is removed."""
    try:
        workspace, role, volume, access = _volume(request, ws_id, name)
    except (NotFound, PermissionDenied) as exc:
        if not request.htmx:
            raise
        response = render(request, "volumes/_lease_banner.html", {"gone": exc.message})
        response.status_code = HttpResponseStopPolling.status_code
        return response
    return render(request, "volumes/_lease_banner.html", {"ws": workspace, "volume": volume, **_lease_context(volume)})


def _file_entry(volume: Volume, path: str):
    entry = files.entry_at(volume, path)
    if entry.type != FILE:
        raise VolumesError(f"{path!r} is a {'folder' if entry.type == DIR else 'symlink'}, not a file")
    return entry


@require_GET
@dashboard_view
def file_download(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name)
    entry = _file_entry(volume, request.GET.get("path", ""))
    response = StreamingHttpResponse(files.open_file(volume, entry), content_type="application/octet-stream")
    response["Content-Length"] = str(entry.size)
    response["Content-Disposition"] = content_disposition_header(True, entry.path.rpartition("/")[2])
    response["Content-Security-Policy"] = "sandbox"  # never run as a page of ours, even if opened inline
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


def _dialog(request, workspace, role, fragment: str, ctx: dict, title: str, status: int = 200) -> HttpResponse:
    template = fragment if _fragment(request) else "volumes/dialog_page.html"
    return _page(request, template, {**ctx, "fragment": fragment, "title": title}, workspace, role, "volumes", status)


@require_POST
@dashboard_view
def file_upload(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """Upload files into a folder: multipart from the browser (one generation for the batch),
    or a raw request body with `?path=` (streamed, for scripts)."""
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    if request.content_type != "multipart/form-data":
        path = request.GET.get("path", "")
        generation = files.file_put(volume, path, request, user=request.user)
        return JsonResponse({"generation": generation, "message": f"Uploaded {path}."})
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
        return JsonResponse({"error": exc.code, "detail": exc.message}, status=exc.status)
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


# Sharing --------------------------------------------------------------------------------------

def _principal(workspace: Workspace, form_data: dict):
    """The user or group named in a share form, limited to this workspace."""
    User = get_user_model()
    members = User.objects.filter(memberships__workspace=workspace)
    groups = permissions.groups_in_workspace(workspace)
    principal = (form_data.get("principal") or "").strip()
    if principal:
        kind, _, pk = principal.partition(":")
        target = (members if kind == "user" else groups if kind == "group" else User.objects.none()).filter(
            pk=pk if pk.isdigit() else 0).first()
        if target is not None:
            return target
    who = (form_data.get("who") or "").strip().removeprefix("@")
    target = members.filter(username__iexact=who).first() or groups.filter(name__iexact=who).first()
    if target is None:
        raise VolumesError(f"no user or group named {who!r} in this workspace; pick one from the suggestions")
    return target


def _shares_response(request, workspace, role, volume, access, form, status=200, message="") -> HttpResponse:
    ctx = {"volume": volume, "access": access, "form": form, "shares": permissions.shares_of(volume)}
    response = _dialog(request, workspace, role, "volumes/_shares.html", ctx, f"Share {volume.name}", status)
    if message and request.htmx:
        trigger_client_event(response, "meta-refresh")  # the page's "Sharing" figure
        _toast(response, message)
    return response


@require_http_methods(["GET", "POST"])
@dashboard_view
def volume_shares(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name, need="share")
    if request.method == "GET":
        return _shares_response(request, workspace, role, volume, access, forms.ShareForm())
    if "change" in request.POST:
        change = forms.ShareChangeForm(request.POST)
        if change.is_valid():
            target = _principal(workspace, {"principal": change.cleaned_data["principal"]})
            level = change.cleaned_data["level"]
            permissions.set_share(volume, target, None if level == "remove" else level)
            label = getattr(target, "username", None) or target.name
            message = f"Removed the share of {label}." if level == "remove" else f"{label} now has " \
                f"{'read-only' if level == 'read' else 'read-write'} access."
            if not request.htmx:
                messages.success(request, message)
            return _shares_response(request, workspace, role, volume, access, forms.ShareForm(), message=message)
        return _error(request, "choose read-only, read-write or remove", 400)
    form = forms.ShareForm(request.POST)
    if form.is_valid():
        try:
            target = _principal(workspace, form.cleaned_data)
        except VolumesError as exc:
            form.add_error("who", exc.message)
        else:
            level = form.cleaned_data["level"]
            permissions.set_share(volume, target, level)
            label = getattr(target, "username", None) or f"group {target.name}"
            message = f"Shared with {label} ({'read-only' if level == 'read' else 'read-write'})."
            if not request.htmx:
                messages.success(request, message)
            return _shares_response(request, workspace, role, volume, access, forms.ShareForm(), message=message)
    return _shares_response(request, workspace, role, volume, access, form, status=422)


@require_GET
@dashboard_view
def principals(request: HttpRequest, ws_id: str) -> HttpResponse:
    """Typeahead suggestions: users and groups of the workspace matching `who`."""
    workspace, role = _workspace(request, ws_id)
    query = request.GET.get("who", "").strip().removeprefix("@")[:150]
    users = get_user_model().objects.filter(memberships__workspace=workspace).order_by("username")
    groups = permissions.groups_in_workspace(workspace)
    if query:
        users, groups = users.filter(username__icontains=query), groups.filter(name__icontains=query)
    return render(request, "volumes/_principal_options.html",
                  {"users": users[:8], "groups": groups[:8], "query": query})


# Delete guard ---------------------------------------------------------------------------------

@require_http_methods(["GET", "POST"])
@dashboard_view
def volume_delete(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name, need="delete")
    form = forms.ConfirmNameForm(request.POST or None, expected=volume.name)
    status, refused = 200, ""
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                volume_services.volume_delete(volume, user=request.user)
            except LeaseHeld as exc:
                refused, status = exc.message, 409
            else:
                messages.success(request, f"Volume {volume.name} and its files were deleted.")
                url = reverse("volumes", args=[workspace.pk])
                return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    ctx = {"volume": volume, "form": form, "refused": refused, "recent_jobs": selectors.volume_recent_jobs(volume),
           **_lease_context(volume)}
    return _dialog(request, workspace, role, "volumes/_volume_delete.html", ctx, f"Delete {volume.name}", status)


# History --------------------------------------------------------------------------------------

@require_GET
@dashboard_view
def volume_history(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name)
    paginator = Paginator(selectors.volume_history(volume), 50)
    ctx = {"volume": volume, "access": access, "tab": "history", "page": paginator.get_page(request.GET.get("page")),
           "shares": permissions.shares_of(volume), "keep_generations": conf.get("HISTORY_KEEP_GENERATIONS"),
           "keep_days": conf.get("HISTORY_KEEP_DAYS"), **_lease_context(volume)}
    return _page(request, "volumes/volume_history.html", ctx, workspace, role, "volumes")


@require_GET
@dashboard_view
def history_diff(request: HttpRequest, ws_id: str, name: str, gen: int) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name)
    commit = VolumeCommit.objects.filter(volume=volume, generation=gen).select_related("user", "job").first()
    if commit is None:
        raise NotFound(f"generation {gen} of volume {volume.name!r} is not kept (old generations are collected)")
    new = files.manifest_of(volume, gen)
    parent_missing = False
    if commit.parent:
        try:
            base = files.manifest_of(volume, commit.parent)
        except NotFound:
            base, parent_missing = Manifest(), True
    else:
        base = Manifest()
    added, changed, deleted = diff(base, new)
    key = lambda e: e.path  # noqa: E731
    ctx = {"volume": volume, "access": access, "commit": commit, "parent_missing": parent_missing,
           "added": sorted(added, key=key), "changed": sorted(changed, key=key),
           "deleted": sorted(deleted, key=key), "tab": "history", "shares": permissions.shares_of(volume),
           **_lease_context(volume)}
    return _page(request, "volumes/volume_diff.html", ctx, workspace, role, "volumes")


@require_http_methods(["GET", "POST"])
@dashboard_view
def history_restore(request: HttpRequest, ws_id: str, name: str, gen: int) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    commit = VolumeCommit.objects.filter(volume=volume, generation=gen).first()
    if commit is None:
        raise NotFound(f"generation {gen} of volume {volume.name!r} is not kept (old generations are collected)")
    if request.method == "GET":
        return _dialog(request, workspace, role, "volumes/_restore.html",
                       {"volume": volume, "commit": commit, "gen_label": f"#{gen}"}, f"Restore generation {gen}")
    generation = files.generation_restore(volume, gen, user=request.user)
    messages.success(request, f"Restored generation {gen} as generation {generation}.")
    url = reverse("volume_history", args=[workspace.pk, volume.name])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# Settings > Storage ---------------------------------------------------------------------------

def _storage_context(workspace: Workspace) -> dict:
    storages = list(ObjectStorage.objects.filter(workspace=workspace).annotate(volume_count=Count("volumes")))
    for storage in storages:
        storage.location = storage_url_label(storage.kind, storage.config)
    return {"storages": storages, "volume_storage_form": forms.VolumeStorageForm(workspace=workspace),
            "volume_storage": next((s for s in storages if s.pk == workspace.volume_storage_id), None)}


@require_GET
@dashboard_view
def storage_settings(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _admin_workspace(request, ws_id)
    return _page(request, "volumes/storage_settings.html", _storage_context(workspace), workspace, role, "storage")


@require_http_methods(["GET", "POST"])
@dashboard_view
def storage_edit(request: HttpRequest, ws_id: str, pk: int | None = None) -> HttpResponse:
    workspace, role = _admin_workspace(request, ws_id)
    instance = None
    if pk is not None:
        instance = ObjectStorage.objects.filter(workspace=workspace, pk=pk).first()
        if instance is None:
            raise NotFound(f"storage {pk} not found in this workspace")
    form = forms.StorageForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            storage = workspace_services.storage_save(
                workspace, data["name"], data["kind"], data["config"], data["is_primary"], storage=instance
            )
        except VolumesError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Storage {storage.name} saved. Use “Test connection” to check it.")
            url = reverse("storage_settings", args=[workspace.pk])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    ctx = {"form": form, "instance": instance}
    status = 422 if request.method == "POST" else 200
    template = "volumes/_storage_form.html" if _fragment(request) else "volumes/dialog_page.html"
    return _page(request, template, {**ctx, "fragment": "volumes/_storage_form.html",
                                     "title": "Edit storage" if instance else "Add storage"},
                 workspace, role, "storage", status)


@require_POST
@dashboard_view
def storage_delete(request: HttpRequest, ws_id: str, pk: int) -> HttpResponse:
    workspace, role = _admin_workspace(request, ws_id)
    storage = ObjectStorage.objects.filter(workspace=workspace, pk=pk).first()
    if storage is None:
        raise NotFound(f"storage {pk} not found in this workspace")
    workspace_services.storage_delete(storage)
    messages.success(request, f"Storage {storage.name} removed.")
    url = reverse("storage_settings", args=[workspace.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_POST
@dashboard_view
def storage_test(request: HttpRequest, ws_id: str, pk: int | None = None) -> HttpResponse:
    """Test a saved storage, or the unsaved values of the storage form."""
    workspace, role = _admin_workspace(request, ws_id)
    if pk is not None:
        storage = ObjectStorage.objects.filter(workspace=workspace, pk=pk).first()
        if storage is None:
            raise NotFound(f"storage {pk} not found in this workspace")
        kind, config, label = storage.kind, storage.config, storage.name
    else:
        instance = ObjectStorage.objects.filter(workspace=workspace, pk=request.POST.get("instance") or 0).first()
        form = forms.StorageForm(request.POST, instance=instance)
        if not form.is_valid():
            errors = "; ".join(f"{form[f].label if f != '__all__' else ''}: {e[0]}" for f, e in form.errors.items())
            return render(request, "volumes/_storage_test.html", {"ok": False, "message": f"Fix the form first ({errors})."})
        kind, config, label = form.cleaned_data["kind"], form.cleaned_data["config"], form.cleaned_data["name"]
    try:
        build_store(kind, config, label=label).check()
    except ValueError as exc:
        return render(request, "volumes/_storage_test.html", {"ok": False, "message": f"{exc}."})
    except VolumesError as exc:
        return render(request, "volumes/_storage_test.html", {"ok": False, "message": exc.message})
    except Exception as exc:  # a vendor error the adapter did not translate: still say what happened
        return render(request, "volumes/_storage_test.html",
                      {"ok": False, "message": f"storage {label!r} is unavailable: {exc.__class__.__name__}: {exc}"})
    return render(request, "volumes/_storage_test.html", {"ok": True, "message": f"Connected to {label}: "
                                                          "listing, writing and deleting a test object worked."})


@require_POST
@dashboard_view
def volume_storage(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _admin_workspace(request, ws_id)
    form = forms.VolumeStorageForm(request.POST, workspace=workspace)
    if not form.is_valid():
        raise VolumesError("pick one of this workspace's storages")
    storage = form.cleaned_data["storage"]
    workspace_services.volume_storage_select(workspace, storage)
    if storage is None:
        messages.warning(request, "No volume storage selected: jobs with volume annotations will fail until you pick one.")
    else:
        messages.success(request, f"New volumes will live in {storage.name}.")
    url = reverse("storage_settings", args=[workspace.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# Jobs -----------------------------------------------------------------------------------------

@require_GET
@dashboard_view
def jobs_page(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _workspace(request, ws_id)
    paginator = Paginator(selectors.jobs_for_user(request.user, workspace).prefetch_related("mounts"), 50)
    page = paginator.get_page(request.GET.get("page"))
    for job in page.object_list:
        job.duration_s = _seconds(job.started_at, job.finished_at)
    ctx = {"page": page, "live": any(not j.is_finished for j in page.object_list)}
    if _fragment(request):
        return render(request, "volumes/_job_rows.html", {**ctx, "ws": workspace})
    return _page(request, "volumes/jobs.html", ctx, workspace, role, "jobs")


@require_http_methods(["GET", "POST"])
@dashboard_view
def job_new(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _workspace(request, ws_id)
    form = forms.JobForm(request.POST or None, workspace_id=workspace.pk)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = job_services.job_submit(workspace, request.user, data["language"], data["content"], data["args"])
        except VolumesError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("job", ws_id=workspace.pk, job_id=job.pk)
    ctx = {"form": form, "examples": forms.JOB_EXAMPLE, "no_storage": workspace.volume_storage_id is None}
    return _page(request, "volumes/job_new.html", ctx, workspace, role, "jobs",
                 status=422 if request.method == "POST" else 200)


def _seconds(start, end) -> float | None:
    return (end - start).total_seconds() if start and end else None


def _job_context(job: Job) -> dict:
    return {"job": job, "mounts": list(job.mounts.select_related("volume")),
            "result_json": json.dumps(job.result, indent=2, ensure_ascii=False),
            "args_json": json.dumps(job.args, ensure_ascii=False),
            "duration": _seconds(job.started_at, job.finished_at),
            "script_duration": _seconds(job.script_started_at, job.script_finished_at)}


@require_GET
@dashboard_view
def job_detail(request: HttpRequest, ws_id: str, job_id: int) -> HttpResponse:
    workspace, role, job = _job(request, ws_id, job_id)
    return _page(request, "volumes/job_detail.html", _job_context(job), workspace, role, "jobs")


@require_GET
@dashboard_view
def job_live(request: HttpRequest, ws_id: str, job_id: int) -> HttpResponse:
    """The polled part of a run page; it stops polling itself once the job has finished."""
    workspace, role, job = _job(request, ws_id, job_id)
    return render(request, "volumes/_job_live.html", {**_job_context(job), "ws": workspace})


@require_POST
@dashboard_view
def job_cancel(request: HttpRequest, ws_id: str, job_id: int) -> HttpResponse:
    workspace, role, job = _job(request, ws_id, job_id)
    if job.is_finished:
        raise VolumesError(f"job {job.pk} has already finished ({job.status}); there is nothing to cancel")
    job_services.job_cancel(job)
    job.refresh_from_db()
    if request.htmx:
        return _toast(render(request, "volumes/_job_live.html", {**_job_context(job), "ws": workspace}),
                      f"Cancellation of job {job.pk} requested.")
    messages.success(request, f"Cancellation of job {job.pk} requested.")
    return redirect("job", ws_id=workspace.pk, job_id=job.pk)

