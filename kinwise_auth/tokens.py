"""The default token issuer: a simplejwt refresh/access pair of one session."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework_simplejwt.tokens import RefreshToken

__all__ = ["issue_token_pair"]


def issue_token_pair(user: AbstractBaseUser, *, sid: str) -> dict[str, str]:
    """``{"access", "refresh"}`` for ``user`` in session ``sid`` (the
    ``TOKEN_ISSUER`` default).

    A host adds claims by pointing ``TOKEN_ISSUER`` at its own function with this
    signature; it must set the ``sid`` claim on the refresh token before deriving
    the access token, which copies it. With the blacklist app installed the
    refresh token is recorded as outstanding, so it can be revoked.
    """
    refresh = RefreshToken.for_user(user)
    refresh["sid"] = sid
    return {"access": str(refresh.access_token), "refresh": str(refresh)}
