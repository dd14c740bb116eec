"""Writes for people: members of a workspace, their roles, password links and API tokens."""
from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from .. import permissions
from ..exceptions import NotFound, VolumesError
from ..models import ApiToken, Membership, Workspace
from .workspaces import user_ensure

MAX_TOKENS_PER_USER = 50


def password_link_path(user) -> str:
    """The path of a one-time link that lets `user` set a password (Django's reset token: it stops
    working once the password changes, and after PASSWORD_RESET_TIMEOUT)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("set_password", args=[uid, default_token_generator.make_token(user)])


def _admin_count(workspace: Workspace) -> int:
    return Membership.objects.filter(workspace=workspace, role=Membership.Role.ADMIN).count()


@transaction.atomic
def member_add(workspace: Workspace, username: str, role: str = Membership.Role.MEMBER) -> tuple[Membership, bool]:
    """Add a user (created without a password if new) to the workspace; (membership, user_is_new)."""
    username = username.strip()
    if role not in Membership.Role.values:
        raise VolumesError(f"unknown role {role!r}; pick admin or member")
    User = get_user_model()
    is_new = not User.objects.filter(username=username).exists()
    if is_new:
        field = User._meta.get_field(User.USERNAME_FIELD)
        try:
            field.run_validators(username)
            field.clean(username, None)
        except Exception as exc:  # ValidationError: say what a name may hold
            raise VolumesError(f"{username!r} is not a valid user name: " + "; ".join(getattr(exc, "messages", [str(exc)])))
    user = user_ensure(username)
    if Membership.objects.filter(workspace=workspace, user=user).exists():
        raise VolumesError(f"{username} is already a member of {workspace.name}")
    return Membership.objects.create(workspace=workspace, user=user, role=role), is_new


@transaction.atomic
def member_set_role(workspace: Workspace, user, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise VolumesError(f"unknown role {role!r}; pick admin or member")
    membership = Membership.objects.select_for_update().filter(workspace=workspace, user=user).first()
    if membership is None:
        raise permissions.not_a_member(user, workspace)
    if membership.role == Membership.Role.ADMIN and role != Membership.Role.ADMIN and _admin_count(workspace) <= 1:
        raise VolumesError(f"{user} is the last admin of {workspace.name}; make someone else admin first")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(workspace: Workspace, user) -> None:
    """Remove a member (their queued jobs are cancelled by the membership's delete signal)."""
    membership = Membership.objects.select_for_update().filter(workspace=workspace, user=user).first()
    if membership is None:
        raise permissions.not_a_member(user, workspace)
    if membership.role == Membership.Role.ADMIN and _admin_count(workspace) <= 1:
        raise VolumesError(f"{user} is the last admin of {workspace.name}; make someone else admin first")
    membership.delete()


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(user, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`; the key is returned once and only its hash is stored."""
    name = name.strip()[:100] or "token"
    if ApiToken.objects.filter(user=user).count() >= MAX_TOKENS_PER_USER:
        raise VolumesError(f"you have {MAX_TOKENS_PER_USER} tokens; revoke one you no longer use first")
    key = "vol_" + secrets.token_urlsafe(30)
    token = ApiToken.objects.create(user=user, name=name, key_hash=_hash(key), prefix=key[:8])
    return token, key


def token_revoke(user, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise NotFound(f"token {token_id} not found")
    token.delete()
    return token


def token_user(key: str):
    """The active user a key belongs to, or None; notes when the token was last used."""
    token = ApiToken.objects.select_related("user").filter(key_hash=_hash(key)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
