"""Settings > Storage and Settings > Workers (admins)."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST, require_http_methods

from ... import selectors
from ...exceptions import VolumesError
from ...models import Workspace
from ...services import workspaces as workspace_services
from ...storage.policy import storage_probe
from .. import forms
from .common import _admin_workspace, _fragment, _go, _page, dashboard_view


def _storage_context(workspace: Workspace) -> dict:
    storages = selectors.storages_for_workspace(workspace)
    return {"storages": storages, "volume_storage_form": forms.VolumeStorageForm(workspace=workspace),
            "volume_storage": next((s for s in storages if s.pk == workspace.volume_storage_id), None)}


@require_GET
@dashboard_view
def workers_page(request: HttpRequest, ws_id: str) -> HttpResponse:
    """Settings > Workers (admins): the Celery and agent workers serving this workspace, silent ones marked."""
    from ...services.workers import HEARTBEAT_SECONDS

    workspace, role = _admin_workspace(request, ws_id)
    ctx = {"workers": selectors.workers_for_workspace(workspace), "heartbeat_seconds": int(HEARTBEAT_SECONDS)}
    return _page(request, "volumes/workers.html", ctx, workspace, role, "workers")


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
        instance = selectors.storage_get(workspace, pk)
    form = forms.StorageForm(request.POST or None, instance=instance)
    if not request.user.is_superuser:
        from ...storage.policy import workspace_base

        form.fields["cfg_root"].help_text = (f"The folder {workspace_base(workspace.pk)} or a folder inside it "
                                             "(this workspace's place on the server).")
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            storage = workspace_services.storage_save(
                workspace, data["name"], data["kind"], data["config"], data["is_primary"], storage=instance,
                user=request.user,
            )
        except VolumesError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Storage {storage.name} saved; writing and deleting a test object worked.")
            url = reverse("storage_settings", args=[workspace.pk])
            return _go(request, url)
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
    storage = selectors.storage_get(workspace, pk)
    workspace_services.storage_delete(storage)
    messages.success(request, f"Storage {storage.name} removed.")
    url = reverse("storage_settings", args=[workspace.pk])
    return _go(request, url)


@require_POST
@dashboard_view
def storage_test(request: HttpRequest, ws_id: str, pk: int | None = None) -> HttpResponse:
    """Test a saved storage, or the unsaved values of the storage form."""
    workspace, role = _admin_workspace(request, ws_id)
    if pk is not None:
        storage = selectors.storage_get(workspace, pk)
        # Saved settings passed the folder and credential rules when they were saved (perhaps by the
        # operator); the endpoint rules are checked again, since names may resolve elsewhere now.
        kind, config, unconfined = storage.kind, storage.config, True
    else:
        instance = selectors.storage_in_workspace(workspace, request.POST.get("instance") or 0)
        form = forms.StorageForm(request.POST, instance=instance)
        if not form.is_valid():
            errors = "; ".join(f"{form[f].label if f != '__all__' else ''}: {e[0]}" for f, e in form.errors.items())
            return render(request, "volumes/_storage_test.html", {"ok": False, "message": f"Fix the form first ({errors})."})
        kind, config = form.cleaned_data["kind"], form.cleaned_data["config"]
        unconfined = request.user.is_superuser
    try:
        # The same rules and check as saving: "works", or the step that failed and why, never what
        # else exists on the server.
        storage_probe(kind, config, workspace.pk, unconfined=unconfined)
    except VolumesError as exc:
        return render(request, "volumes/_storage_test.html", {"ok": False, "message": exc.message})
    return render(request, "volumes/_storage_test.html",
                  {"ok": True, "message": "Works: listing, writing, reading and deleting a test object succeeded."})


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
    return _go(request, url)
