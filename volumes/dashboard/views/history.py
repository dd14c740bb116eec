"""A volume's history: generations with their charts and diffs, restore and prune; one file's versions."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST, require_http_methods

from ... import conf, permissions, selectors
from ...exceptions import VolumesError
from ...services import file_history, files, volumes as volume_services
from .common import _dialog, _go, _lease_context, _page, _volume, dashboard_view


@require_GET
@dashboard_view
def volume_history(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name)
    paginator = Paginator(selectors.volume_history(volume), 50)
    from django.template.defaultfilters import filesizeformat

    from ..charts import line_chart

    recent = selectors.volume_size_series(volume, 200)
    charts = [c for c in (
        line_chart("Size over generations", [(g, s) for g, s, _ in recent], filesizeformat),
        line_chart("Files over generations", [(g, n) for g, _, n in recent], lambda n: f"{int(n):,} files"),
    ) if c]
    ctx = {"volume": volume, "access": access, "tab": "history", "page": paginator.get_page(request.GET.get("page")),
           "charts": charts if len(recent) > 1 else [],
           "shares": permissions.shares_of(volume), "keep_generations": conf.get("HISTORY_KEEP_GENERATIONS"),
           "keep_days": conf.get("HISTORY_KEEP_DAYS"), **_lease_context(volume)}
    return _page(request, "volumes/volume_history.html", ctx, workspace, role, "volumes")


@require_GET
@dashboard_view
def history_diff(request: HttpRequest, ws_id: str, name: str, gen: int) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name)
    commit = selectors.volume_commit(volume, gen)
    if commit is None:
        raise files.generation_missing(volume, gen)
    changes = file_history.generation_changes(volume, commit)
    ctx = {"volume": volume, "access": access, "commit": commit, "parent_missing": changes.parent_missing,
           "added": changes.added, "changed": changes.changed, "deleted": changes.deleted, "tab": "history", "shares": permissions.shares_of(volume),
           **_lease_context(volume)}
    return _page(request, "volumes/volume_diff.html", ctx, workspace, role, "volumes")


@require_http_methods(["GET", "POST"])
@dashboard_view
def history_restore(request: HttpRequest, ws_id: str, name: str, gen: int) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    commit = selectors.volume_commit(volume, gen)
    if commit is None:
        raise files.generation_missing(volume, gen)
    if request.method == "GET":
        return _dialog(request, workspace, role, "volumes/_restore.html",
                       {"volume": volume, "commit": commit, "gen_label": f"#{gen}"}, f"Restore generation {gen}")
    generation = files.generation_restore(volume, gen, user=request.user)
    messages.success(request, f"Restored generation {gen} as generation {generation}.")
    url = reverse("volume_history", args=[workspace.pk, volume.name])
    return _go(request, url)


@require_http_methods(["GET", "POST"])
@dashboard_view
def history_prune(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """Drop every generation but the current one from the history (frees storage at the next GC)."""
    workspace, role, volume, access = _volume(request, ws_id, name, need="delete")
    if request.method == "GET":
        older = selectors.volume_older_generation_count(volume)
        return _dialog(request, workspace, role, "volumes/_prune.html", {"volume": volume, "older": older},
                       "Prune history")
    dropped = volume_services.volume_prune_history(volume, keep=1, user=request.user)
    messages.success(request, f"Dropped {dropped} old generation{'s' if dropped != 1 else ''} from the history; "
                              "their storage is freed at the next garbage collection.")
    url = reverse("volume_history", args=[workspace.pk, volume.name])
    return _go(request, url)


@require_GET
@dashboard_view
def file_versions(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """A file's versions across generations; ?gen= shows that version's text diff with the one before."""
    workspace, role, volume, access = _volume(request, ws_id, name)
    path = request.GET.get("path", "")
    versions = file_history.file_versions(volume, path)
    ctx: dict[str, Any] = {"volume": volume, "access": access, "path": versions[0].entry.path, "versions": versions,
                           "tab": "files", "shares": permissions.shares_of(volume), **_lease_context(volume),
                           "limit": file_history.MAX_VERSIONS,
                           "parent_folder": versions[0].entry.path.rpartition("/")[0]}
    gen = request.GET.get("gen", "")
    for i, version in enumerate(versions):
        if str(version.generation) == gen:
            before = versions[i + 1] if i + 1 < len(versions) else None
            lines, why = file_history.version_diff(volume, path, before.entry if before else None, version.entry)
            ctx.update({"shown": version, "before": before, "diff_lines": lines, "no_diff": why})
    return _page(request, "volumes/file_versions.html", ctx, workspace, role, "volumes")


@require_POST
@dashboard_view
def file_version_restore(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    workspace, role, volume, access = _volume(request, ws_id, name, need="write")
    path, gen = request.POST.get("path", ""), request.POST.get("gen", "")
    if not gen.isdigit():
        raise VolumesError("pick the version to restore")
    generation = file_history.file_version_restore(volume, path, int(gen), user=request.user)
    messages.success(request, f"Restored {path} as it was in generation {gen} (now generation {generation}).")
    url = f"{reverse('file_versions', args=[workspace.pk, volume.name])}?{urlencode({'path': path})}"
    return _go(request, url)
