"""API authentication: `Authorization: Token <key>` with a user's named tokens (stored hashed),
or a key made by `drf_create_token` (DRF's one token per user)."""
from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


class ApiTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        from ..services.accounts import token_user

        user = token_user(key)
        if user is not None:
            return (user, None)
        try:
            return super().authenticate_credentials(key)
        except exceptions.AuthenticationFailed:
            raise exceptions.AuthenticationFailed("Invalid token: it was revoked or never existed; create one "
                                                  "under Account > API tokens.")
