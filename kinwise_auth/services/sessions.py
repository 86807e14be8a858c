"""Signed-in sessions: issuing tokens, refreshing and revoking them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables
from rest_framework_simplejwt import settings as jwt_settings
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.tokens import RefreshToken

from .. import audit
from ..conf import auth_settings
from ..errors import InvalidToken, TokenNotValid
from .meta import RequestMeta

__all__ = [
    "SignIn",
    "sign_in",
    "issue_tokens",
    "parse_refresh",
    "refresh_session",
    "refresh_token_user_id",
    "refresh_claims",
    "logout",
    "revoke_refresh_tokens",
]

INVALID_REFRESH = _("Invalid or expired refresh token.")


@dataclass(frozen=True)
class SignIn:
    user: AbstractBaseUser
    tokens: dict[str, str]


def sign_in(user: AbstractBaseUser, *, method: str, meta: RequestMeta) -> SignIn:
    """Issue tokens (``TOKEN_ISSUER``) for an authenticated, active user; audit it."""
    if not user.is_active:
        # A host backend may return inactive users; no flow hands them tokens.
        raise ValueError("sign_in() refuses an inactive user")
    tokens = issue_tokens(user)
    audit.record("login_succeeded", user=user, meta=meta, extra={"method": method})
    return SignIn(user=user, tokens=tokens)


def issue_tokens(user: AbstractBaseUser) -> dict[str, str]:
    """A token pair from the ``TOKEN_ISSUER`` hook."""
    return dict(auth_settings.TOKEN_ISSUER(user))


def _jwt() -> Any:
    # simplejwt rebinds its settings object when SIMPLE_JWT changes: read it late.
    return jwt_settings.api_settings


def _user_for(user_id: Any, *, lock: bool = False) -> AbstractBaseUser | None:
    if user_id is None:
        return None
    users = get_user_model()._default_manager.all()
    if lock:
        users = users.select_for_update(no_key=True)  # as identities.lock_user
    user = users.filter(**{_jwt().USER_ID_FIELD: user_id}).first()
    if user is None or not _jwt().USER_AUTHENTICATION_RULE(user):
        return None
    return user


@sensitive_variables()
def parse_refresh(refresh: str) -> RefreshToken:
    """A verified refresh token (signature, expiry, type, blacklist).

    Raises :class:`TokenNotValid` otherwise.
    """
    try:
        return RefreshToken(refresh)  # type: ignore[arg-type]
    except TokenError:
        raise TokenNotValid() from None


def refresh_token_user_id(token: RefreshToken) -> Any:
    """The user id a verified refresh token was issued for."""
    return token.payload.get(_jwt().USER_ID_CLAIM)


@sensitive_variables()
def refresh_session(token: RefreshToken) -> dict[str, str]:
    """A new access token, and a rotated refresh token when simplejwt rotates.

    Raises :class:`TokenNotValid` when the token's user was deleted or may no
    longer sign in (simplejwt's own view answers a 500 for a deleted user). With
    rotation, the user row is locked first, as password change, reset and
    deletion lock it (one lock order, so a refresh racing them never deadlocks),
    then the old token's outstanding row while it is blacklisted: of two
    concurrent refreshes of one token one wins, and a refresh that waited for a
    password change finds its token revoked.
    """
    if not _jwt().ROTATE_REFRESH_TOKENS:
        if _user_for(refresh_token_user_id(token)) is None:
            raise TokenNotValid()
        return {"access": str(token.access_token)}
    with transaction.atomic():
        if _user_for(refresh_token_user_id(token), lock=True) is None:
            raise TokenNotValid()
        if _jwt().BLACKLIST_AFTER_ROTATION and hasattr(token, "blacklist"):
            from rest_framework_simplejwt.token_blacklist.models import (
                BlacklistedToken,
                OutstandingToken,
            )

            jti = token[_jwt().JTI_CLAIM]
            OutstandingToken.objects.select_for_update().filter(jti=jti).first()
            if BlacklistedToken.objects.filter(token__jti=jti).exists():
                raise TokenNotValid()  # revoked, or a concurrent refresh rotated it
            token.blacklist()
        data = {"access": str(token.access_token)}
        token.set_jti()
        token.set_exp()
        token.set_iat()
        token.outstand()
    data["refresh"] = str(token)
    return data


@sensitive_variables()
def logout(*, refresh: str, meta: RequestMeta) -> None:
    """Blacklist ``refresh``. A token already blacklisted is accepted again.

    Raises :class:`InvalidToken` for anything that is not a live or revoked
    refresh token of this site.
    """
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]
    except TokenError:
        if _already_blacklisted(refresh):
            return
        raise InvalidToken(INVALID_REFRESH) from None
    if not hasattr(token, "blacklist"):
        raise ImproperlyConfigured(
            "logout/ needs rest_framework_simplejwt.token_blacklist in INSTALLED_APPS"
        )
    token.blacklist()
    audit.record("logged_out", user=_user_for(refresh_token_user_id(token)), meta=meta)


@sensitive_variables()
def refresh_claims(refresh: str) -> dict[str, Any] | None:
    """The claims of a genuine refresh token of this site, revoked or not."""
    try:
        payload = token_backend.decode(refresh, verify=True)  # type: ignore[arg-type]
    except (TokenError, TokenBackendError):
        return None
    if payload.get(_jwt().TOKEN_TYPE_CLAIM) != "refresh":
        return None
    return dict(payload)


@sensitive_variables()
def _already_blacklisted(refresh: str) -> bool:
    payload = refresh_claims(refresh)
    if payload is None:
        return False
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    return BlacklistedToken.objects.filter(
        token__jti=payload.get(_jwt().JTI_CLAIM)
    ).exists()


def revoke_refresh_tokens(user: AbstractBaseUser) -> int:
    """Blacklist every outstanding refresh token of ``user``; return how many.

    Access tokens already issued stay valid until they expire: keep
    ``ACCESS_TOKEN_LIFETIME`` short. Without simplejwt's blacklist app there is
    nothing to revoke (system check ``kinwise_auth.W001`` warns).
    """
    from django.apps import apps

    if not apps.is_installed("rest_framework_simplejwt.token_blacklist"):
        return 0
    from rest_framework_simplejwt.token_blacklist.models import (
        BlacklistedToken,
        OutstandingToken,
    )

    live = OutstandingToken.objects.filter(
        user_id=user.pk, blacklistedtoken__isnull=True
    )
    return len(
        BlacklistedToken.objects.bulk_create(
            [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
        )
    )
