"""What every dashboard view shares: the login and error wrapper, page and fragment rendering, and the
permission helpers a view starts with (404 for what the caller may not see, 403 for what they may see
but not do; the decisions and their wording are volumes.permissions')."""
from __future__ import annotations

import functools
from typing import Any, Callable

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect, reswap, trigger_client_event

from ... import permissions, selectors
from ...exceptions import VolumesError, public_error
from ...models import Job, Membership, Volume, Workspace


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
            message = public_error(exc, lambda: permissions.sees_storage(request.user, kwargs.get("ws_id")))[0]
            return _error(request, message, exc.status)
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


def _go(request: HttpRequest, url: str) -> HttpResponse:
    """To `url` as a whole page, also when the request came from an htmx dialog or fragment."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _dialog(request, workspace, role, fragment: str, ctx: dict, title: str, status: int = 200) -> HttpResponse:
    template = fragment if _fragment(request) else "volumes/dialog_page.html"
    return _page(request, template, {**ctx, "fragment": fragment, "title": title}, workspace, role, "volumes", status)


def login_locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """What a locked-out login gets (django-axes' AXES_LOCKOUT_CALLABLE): a clear page and a 429."""
    from django.conf import settings

    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return render(request, "volumes/locked_out.html", {"minutes": minutes}, status=429)


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
    volume, access = permissions.volume_for(request.user, ws_id, name, need)
    return workspace, role, volume, access


def _job(request: HttpRequest, ws_id: str, job_id: int) -> tuple[Workspace, str, Job]:
    workspace, role = _workspace(request, ws_id)
    return workspace, role, permissions.job_for(request.user, workspace, job_id)


def _lease_context(volume: Volume) -> dict:
    holder = selectors.volume_lease_holder(volume.pk)
    return {"leased": holder is not None, "holder": holder, "readers": selectors.volume_readers(volume),
            "waiting": selectors.jobs_waiting_for(volume)}
