"""Sharing a volume with users and groups of its workspace, and the typeahead that finds them."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import trigger_client_event

from ... import permissions, selectors
from ...exceptions import VolumesError
from ...models import Workspace
from ...services.shares import share_set
from .. import forms
from .common import _dialog, _error, _toast, _volume, _workspace, dashboard_view


def _principal(workspace: Workspace, form_data: dict):
    """The user or group named in a share form, limited to this workspace."""
    members = selectors.workspace_members(workspace)
    groups = permissions.groups_in_workspace(workspace)
    principal = (form_data.get("principal") or "").strip()
    if principal:
        kind, _, pk = principal.partition(":")
        target = (members if kind == "user" else groups if kind == "group" else members.none()).filter(
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
            share_set(volume, target, None if level == "remove" else level)
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
            share_set(volume, target, level)
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
    users = selectors.workspace_members(workspace)
    groups = permissions.groups_in_workspace(workspace)
    if query:
        users, groups = users.filter(username__icontains=query), groups.filter(name__icontains=query)
    return render(request, "volumes/_principal_options.html",
                  {"users": users[:8], "groups": groups[:8], "query": query})
