"""Assets > Volumes: the list, a new volume, the live lease badges and banner, health and repair, duplicate,
size limit, delete."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseStopPolling

from ... import conf, selectors
from ...exceptions import LeaseHeld, NotFound, PermissionDenied, VolumesError
from ...models import Workspace
from ...services import volumes as volume_services
from .. import forms
from .common import _dialog, _fragment, _go, _lease_context, _page, _volume, _workspace, dashboard_view


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


def _volume_list_context(request: HttpRequest, workspace: Workspace) -> dict:
    search = request.GET.get("q", "").strip()[:255]
    sort = request.GET.get("sort", "name")
    if sort not in selectors.SORTS:
        sort = "name"
    rows = selectors.volume_list_for_user(request.user, workspace, search, sort)
    holders = {row.volume.pk: selectors.volume_lease_holder(row.volume.pk) for row in rows if row.leased}
    columns = []
    for key, label, num in (("name", "Name", False), ("size", "Size", True), ("files", "Files", True),
                            ("used", "Last used", False)):
        state = "asc" if sort == key else "desc" if sort == f"-{key}" else None
        columns.append({"label": label, "num": num, "state": state, "next": f"-{key}" if state == "asc" else key})
    return {"rows": [(row, holders.get(row.volume.pk)) for row in rows], "q": search, "sort": sort,
            "columns": columns, "total": selectors.volume_count(workspace)}


@require_GET
@dashboard_view
def volumes(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _workspace(request, ws_id)
    ctx = _volume_list_context(request, workspace)
    if _fragment(request):
        return render(request, "volumes/_volume_rows.html", {**ctx, "ws": workspace})
    total = ctx["total"]
    limit = conf.max_volumes_per_workspace()
    from ..charts import bar_chart

    ctx.update({"total": total, "limit": limit, "at_limit": limit is not None and total >= limit,
                "edition": conf.edition(), "no_storage": workspace.volume_storage_id is None,
                "storage_chart": None if ctx["q"] else bar_chart(
                    [(row.volume.name, row.volume.size_bytes, reverse("volume", args=[workspace.pk, row.volume.name]))
                     for row, _ in ctx["rows"]][:20])})
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
                return _go(request, url)
        status = 422
    limit = conf.max_volumes_per_workspace()
    total = selectors.volume_count(workspace)
    ctx = {"form": form, "limit": limit, "total": total, "at_limit": limit is not None and total >= limit,
           "edition": conf.edition()}
    template = "volumes/_volume_new.html" if _fragment(request) else "volumes/dialog_page.html"
    return _page(request, template, {**ctx, "fragment": "volumes/_volume_new.html", "title": "New volume"},
                 workspace, role, "volumes", status)


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


HEALTH_CACHE_SECONDS = 600


@require_GET
@dashboard_view
def volume_health(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """The volume's health badge (loaded after the page): manifest valid, every blob present with its size.
    Manifests never change, so the verdict is kept per generation for a while."""
    from django.core.cache import cache

    from ...services import health

    workspace, role, volume, access = _volume(request, ws_id, name)
    key = f"volumes:health:{volume.pk}:{volume.manifest_key}"
    found = cache.get(key)
    if found is None:
        found = health.volume_check(volume, deep=False)
        cache.set(key, found, HEALTH_CACHE_SECONDS)
    return render(request, "volumes/_health_badge.html", {"ws": workspace, "volume": volume, "health": found})


@require_http_methods(["GET", "POST"])
@dashboard_view
def volume_repair(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """GET: what a full check (hashes too) finds, with a Repair button for writers; POST: repair."""
    from ...services import health

    workspace, role, volume, access = _volume(request, ws_id, name, need="write" if request.method == "POST" else "see")
    if request.method == "GET":
        found = health.volume_check(volume, deep=True)
        return _dialog(request, workspace, role, "volumes/_repair.html",
                       {"volume": volume, "access": access, "health": found}, f"Check volume {volume.name}")
    found, generation = health.volume_repair(volume, user=request.user)
    if generation is None:
        messages.success(request, f"Volume {volume.name} is healthy; nothing to repair.")
    else:
        messages.success(request, f"Repaired: generation {generation} keeps everything readable and leaves out "
                                  f"{len(found.problems)} damaged entr{'y' if len(found.problems) == 1 else 'ies'}.")
    url = reverse("volume", args=[workspace.pk, volume.name])
    return _go(request, url)


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
                messages.success(request, f"Volume {volume.name} was moved to the trash; you can restore it for "
                                          f"{volume_services.trash_days():g} days.")
                url = reverse("volumes", args=[workspace.pk])
                return _go(request, url)
    ctx = {"volume": volume, "form": form, "refused": refused, "recent_jobs": selectors.volume_recent_jobs(volume),
           "trash_days": volume_services.trash_days(), **_lease_context(volume)}
    return _dialog(request, workspace, role, "volumes/_volume_delete.html", ctx, f"Delete {volume.name}", status)


@require_http_methods(["GET", "POST"])
@dashboard_view
def volume_duplicate(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """A new volume (the caller owns it) from any kept generation of this one; readers may."""
    workspace, role, volume, access = _volume(request, ws_id, name)
    generations = selectors.volume_generation_choices(volume)
    initial = {"name": selectors.free_volume_name(workspace, f"{volume.name}-copy"),
               "generation": request.GET.get("generation") or volume.generation}
    form = forms.DuplicateForm(request.POST or None, initial=initial, generations=generations)
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            data = form.cleaned_data
            generation = volume.generation if data["generation"] is None else data["generation"]
            try:
                copy = volume_services.volume_duplicate(volume, data["name"], request.user, generation)
            except VolumesError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Volume {copy.name} is a copy of {volume.name} generation "
                                          f"{generation}; you own it.")
                url = reverse("volume", args=[workspace.pk, copy.name])
                return _go(request, url)
    limit = conf.max_volumes_per_workspace()
    total = selectors.volume_count(workspace, with_trash=True)
    ctx = {"volume": volume, "form": form, "limit": limit, "total": total, "edition": conf.edition(),
           "at_limit": limit is not None and total >= limit}
    return _dialog(request, workspace, role, "volumes/_volume_duplicate.html", ctx, f"Duplicate {volume.name}", status)


@require_http_methods(["GET", "POST"])
@dashboard_view
def volume_quota(request: HttpRequest, ws_id: str, name: str) -> HttpResponse:
    """The volume's own size limit (owner and admins); a limit below what it stores is saved with a warning."""
    from django.template.defaultfilters import filesizeformat

    workspace, role, volume, access = _volume(request, ws_id, name, need="quota")
    own = volume.max_size_bytes
    form = forms.QuotaForm(request.POST or None, initial={"size": "" if own is None else str(own)})
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            volume = volume_services.volume_set_quota(volume, form.cleaned_data["size"], user=request.user)
            usage = selectors.volume_usage(volume)
            if volume.max_size_bytes is None:
                messages.success(request, f"Volume {volume.name} has no size limit of its own now.")
            elif usage is not None and usage.stored_bytes > volume.max_size_bytes:
                messages.warning(request, f"Volume {volume.name} stores more than its new limit "
                                          f"({filesizeformat(usage.stored_bytes)} of "
                                          f"{filesizeformat(volume.max_size_bytes)}): changes that add data are "
                                          "refused until you delete files or prune its history.")
            else:
                messages.success(request, f"Volume {volume.name} is limited to "
                                          f"{filesizeformat(volume.max_size_bytes)}.")
            url = reverse("volume", args=[workspace.pk, volume.name])
            return _go(request, url)
    ctx = {"volume": volume, "form": form, "usage": selectors.volume_usage(volume),
           "workspace_cap": workspace.max_volume_size}
    return _dialog(request, workspace, role, "volumes/_volume_quota.html", ctx, f"Size limit of {volume.name}", status)
