"""The default token issuer: a simplejwt refresh/access pair."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework_simplejwt.tokens import RefreshToken

__all__ = ["issue_token_pair"]


def issue_token_pair(user: AbstractBaseUser) -> dict[str, str]:
    """``{"access", "refresh"}`` for ``user`` (the ``TOKEN_ISSUER`` default).

    A host adds claims by pointing ``TOKEN_ISSUER`` at its own function with this
    signature. With the blacklist app installed the refresh token is recorded as
    outstanding, so it can be revoked.
    """
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}
