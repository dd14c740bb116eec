"""The trash: deleted volumes, restored or purged by their owners and admins."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from ...services import volumes as volume_services
from ...exceptions import NotFound
from .common import _dialog, _go, _page, _workspace, dashboard_view


@require_http_methods(["GET"])
@dashboard_view
def trash(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _workspace(request, ws_id)
    ctx = {"rows": volume_services.trash_list(request.user, workspace), "trash_days": volume_services.trash_days()}
    return _page(request, "volumes/trash.html", ctx, workspace, role, "trash")


@require_http_methods(["GET", "POST"])
@dashboard_view
def trash_action(request: HttpRequest, ws_id: str, name: str, action: str) -> HttpResponse:
    """POST restores or purges; GET asks first, in the dashboard's own dialog, before a purge."""
    workspace, role = _workspace(request, ws_id)
    volume = volume_services.trashed_volume_for(request.user, ws_id, name)
    if action not in ("restore", "purge"):
        raise NotFound(f"no action {action!r} in the trash; restore or purge")
    if request.method == "GET":
        if action != "purge":
            return redirect("trash", ws_id=workspace.pk)
        return _dialog(request, workspace, role, "volumes/_trash_purge.html", {"volume": volume},
                       f"Delete {volume.name} for good")
    if action == "restore":
        volume_services.volume_restore(volume, user=request.user)
        messages.success(request, f"Volume {volume.name} was restored with its files and history.")
        url = reverse("volume", args=[workspace.pk, volume.name])
    else:
        volume_services.volume_purge(volume, user=request.user)
        messages.success(request, f"Volume {volume.name} was deleted for good; its files are gone from storage.")
        url = reverse("trash", args=[workspace.pk])
    return _go(request, url)
