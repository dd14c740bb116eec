"""Settings > Members (admins) and Account > API tokens (everyone), and the set-password page."""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods, require_POST

from ... import permissions, selectors
from ...exceptions import VolumesError
from ...models import Membership
from ...services import accounts
from ...services.workspaces import agent_role_grant, agent_role_revoke
from .common import _admin_workspace, _page, dashboard_view


def _members_page(request, workspace, role, status=200, **extra) -> HttpResponse:
    rows = selectors.workspace_memberships(workspace)
    for m in rows:
        m.link_allowed = permissions.can_get_password_link(workspace, m.user)
    admins = sum(1 for m in rows if m.role == Membership.Role.ADMIN)
    ctx = {"members": rows, "admin_count": admins, "roles": Membership.Role.choices, **extra}
    return _page(request, "volumes/members.html", ctx, workspace, role, "members", status)


@require_http_methods(["GET", "POST"])
@dashboard_view
def members(request: HttpRequest, ws_id: str) -> HttpResponse:
    workspace, role = _admin_workspace(request, ws_id)
    if request.method == "GET":
        return _members_page(request, workspace, role)
    username = request.POST.get("username", "").strip()
    new_role = request.POST.get("role", Membership.Role.MEMBER)
    if not username:
        return _members_page(request, workspace, role, 422, add_error="Give the user name of the person to add.")
    try:
        membership, is_new = accounts.member_add(workspace, username, new_role)
    except VolumesError as exc:
        return _members_page(request, workspace, role, 422, add_error=exc.message, username=username)
    link = ""
    if permissions.can_get_password_link(workspace, membership.user):
        link = request.build_absolute_uri(accounts.password_link_path(membership.user))
    return _members_page(request, workspace, role, added=membership, is_new=is_new, link=link)


def _member(workspace, user_id: int):
    user = selectors.workspace_members(workspace).filter(pk=user_id).first()
    if user is None:
        raise permissions.not_a_member(user_id, workspace)  # by id: a non-member's name is not the admin's to learn
    return user


@require_POST
@dashboard_view
def member_role(request: HttpRequest, ws_id: str, user_id: int) -> HttpResponse:
    workspace, role = _admin_workspace(request, ws_id)
    user = _member(workspace, user_id)
    membership = accounts.member_set_role(workspace, user, request.POST.get("role", ""))
    messages.success(request, f"{user.username} is now {membership.role} of {workspace.name}.")
    return redirect("members", ws_id=workspace.pk)


@require_POST
@dashboard_view
def member_agent(request: HttpRequest, ws_id: str, user_id: int) -> HttpResponse:
    """Give or take a member's agent role (may run agent workers for this workspace only)."""
    workspace, role = _admin_workspace(request, ws_id)
    user = _member(workspace, user_id)
    if request.POST.get("agent") == "on":
        agent_role_grant(workspace, user)
        messages.success(request, f"{user.username} may now run agent workers for {workspace.name}.")
    else:
        agent_role_revoke(workspace, user)
        messages.success(request, f"{user.username} may no longer run agent workers for {workspace.name}.")
    return redirect("members", ws_id=workspace.pk)


@require_POST
@dashboard_view
def member_remove(request: HttpRequest, ws_id: str, user_id: int) -> HttpResponse:
    workspace, role = _admin_workspace(request, ws_id)
    user = _member(workspace, user_id)
    accounts.member_remove(workspace, user)
    messages.success(request, f"{user.username} was removed from {workspace.name}; their queued jobs were cancelled.")
    if user == request.user:
        return redirect("home")
    return redirect("members", ws_id=workspace.pk)


@require_POST
@dashboard_view
def member_link(request: HttpRequest, ws_id: str, user_id: int) -> HttpResponse:
    workspace, role = _admin_workspace(request, ws_id)
    user = _member(workspace, user_id)
    if not permissions.can_get_password_link(workspace, user):
        raise VolumesError(f"{user.username} already has a password or uses other workspaces too; they can "
                           "change it themselves, or a server admin can (manage.py changepassword)")
    link = request.build_absolute_uri(accounts.password_link_path(user))
    return _members_page(request, workspace, role, link=link, link_for=user)


# Account > API tokens -------------------------------------------------------------------------

def _account_page(request, status=200, **extra) -> HttpResponse:
    workspaces = list(selectors.workspaces_for_user(request.user))
    ws = next((w for w in workspaces if w.pk == request.session.get("workspace")), workspaces[0] if workspaces else None)
    role = None
    if ws is not None:
        role = permissions.role(request.user, ws)
    ctx = {"tokens": selectors.tokens_of(request.user), "workspaces": workspaces,
           "api_url": request.build_absolute_uri("/api/"), **extra}
    return _page(request, "volumes/tokens.html", ctx, ws, role, "tokens", status)


@require_http_methods(["GET", "POST"])
@dashboard_view
def tokens(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        # A new key waits in the session for the one page view after its POST (a reload of that
        # page does not create another token), and is gone after it; never in a URL or a log.
        fresh = request.session.pop("new_token", None)
        created = selectors.tokens_of(request.user).filter(pk=fresh["id"]).first() if fresh else None
        response = _account_page(request, created=created, key=fresh["key"] if created else "")
        response["Cache-Control"] = "no-store"
        return response
    try:
        token, key = accounts.token_create(request.user, request.POST.get("name", ""))
    except VolumesError as exc:
        return _account_page(request, 422, error=exc.message)
    request.session["new_token"] = {"id": token.pk, "key": key}
    return redirect("tokens")


@require_POST
@dashboard_view
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = accounts.token_revoke(request.user, token_id)
    messages.success(request, f"Token {token.name} revoked: scripts and agents using it are refused from now on.")
    return redirect("tokens")


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """The invite link: choose a password, then log in."""

    template_name = "volumes/set_password.html"
    success_url = reverse_lazy("login")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, f"Password set for {form.user.username}. Log in with it now.")
        return response
