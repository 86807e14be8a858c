"""Signed-in sessions: a session per sign-in, its refresh-token family, revocation.

Every sign-in opens a :class:`~kinwise_auth.models.Session`; both tokens carry
its public id as the ``sid`` claim, and the session records the family's one
live refresh token (``refresh_jti``). Rotation moves that pointer with one
conditional UPDATE, so of N concurrent refreshes of one token one wins. A
rotated-away token presented again revokes the session (reuse detection),
unless it was rotated away within ``REFRESH_REUSE_GRACE`` (two tabs). A revoked
session refuses its refresh tokens here and its access tokens in
:mod:`kinwise_auth.authentication`. simplejwt's blacklist, where installed,
stays the record of dead refresh tokens.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables
from rest_framework_simplejwt import settings as jwt_settings
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.tokens import RefreshToken

from .. import audit, outbox
from ..conf import auth_settings
from ..errors import InvalidToken, TokenNotValid
from ..models import OutboxEmail, Session
from .devices import device_label
from .meta import RequestMeta
from .session_state import remember_live, remember_revoked

__all__ = [
    "SESSION_CLAIM",
    "SignIn",
    "sign_in",
    "open_session",
    "issue_tokens",
    "renew_session",
    "parse_refresh",
    "refresh_session",
    "refresh_token_user_id",
    "refresh_claims",
    "logout",
    "revoke_session",
    "revoke_sessions",
    "revoke_refresh_tokens",
]

#: The claim both tokens carry: the session's public id.
SESSION_CLAIM = "sid"

INVALID_REFRESH = _("Invalid or expired refresh token.")


@dataclass(frozen=True)
class SignIn:
    user: AbstractBaseUser
    tokens: dict[str, str]


def sign_in(user: AbstractBaseUser, *, method: str, meta: RequestMeta) -> SignIn:
    """Open a session for an authenticated, active user; its tokens; audit it.

    Costs one INSERT (the session) beyond the issuer's own work.
    """
    if not user.is_active:
        # A host backend may return inactive users; no flow hands them tokens.
        raise ValueError("sign_in() refuses an inactive user")
    tokens = open_session(user, method=method, meta=meta)
    audit.record("login_succeeded", user=user, meta=meta, extra={"method": method})
    return SignIn(user=user, tokens=tokens)


def open_session(
    user: AbstractBaseUser, *, method: str, meta: RequestMeta
) -> dict[str, str]:
    """Open a session of ``user`` (one INSERT, and the cache told it is live
    once the transaction commits); return its token pair. :func:`sign_in` is
    this plus the audit row."""
    sid = uuid.uuid4()
    tokens = issue_tokens(user, sid=sid)
    Session.objects.create(
        public_id=sid,
        user_id=user.pk,
        method=method,
        device=device_label(meta.user_agent),
        first_ip=meta.ip,
        last_ip=meta.ip,
        refresh_jti=_family_jti(tokens["refresh"], sid),
    )
    remember_live(sid)
    return tokens


@sensitive_variables()
def renew_session(
    user: AbstractBaseUser, *, sid: Any, method: str, meta: RequestMeta
) -> dict[str, str]:
    """A fresh token pair for ``user``'s live session ``sid`` (after a password
    change), its refresh token now the family's live one; a new session when
    ``sid`` is None or no longer live."""
    if sid is not None:
        tokens = issue_tokens(user, sid=sid)
        now = timezone.now()
        if Session.objects.filter(
            public_id=sid, user_id=user.pk, revoked_at=None
        ).update(
            previous_jti=F("refresh_jti"),
            refresh_jti=_family_jti(tokens["refresh"], sid),
            rotated_at=now,
            last_used_at=now,
            last_ip=meta.ip,
            reauthenticated_at=now,
        ):
            return tokens
    return open_session(user, method=method, meta=meta)


def issue_tokens(user: AbstractBaseUser, *, sid: Any) -> dict[str, str]:
    """A token pair of session ``sid`` from the ``TOKEN_ISSUER`` hook.

    The hook is called as ``issuer(user, sid=...)`` and must put ``sid`` in the
    refresh token's ``sid`` claim before deriving the access token from it.
    """
    return dict(auth_settings.TOKEN_ISSUER(user, sid=str(sid)))


@sensitive_variables()
def _family_jti(refresh: str, sid: Any) -> str:
    """The ``jti`` of a refresh token the issuer just made for session ``sid``."""
    claims = token_backend.decode(refresh, verify=False)  # type: ignore[arg-type]
    if claims.get(SESSION_CLAIM) != str(sid):
        raise ImproperlyConfigured(
            "TOKEN_ISSUER must set the 'sid' claim it is given on the refresh token "
            "(before deriving the access token): see docs/sessions.md."
        )
    return str(claims[_jwt().JTI_CLAIM])


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


class _Refused(Exception):
    """The session did not take the token: find out why once rolled back."""


@sensitive_variables()
def refresh_session(token: RefreshToken, *, meta: RequestMeta) -> dict[str, str]:
    """A new access token, and a rotated refresh token when simplejwt rotates.

    Raises :class:`TokenNotValid` when the token's user was deleted or may no
    longer sign in, its session is revoked, or the token is not its session's
    live one. A token rotated away more than ``REFRESH_REUSE_GRACE`` ago is a
    stolen copy or a replay: its session is revoked, audited and its owner told.
    The user row is locked first, as password change, reset and deletion lock
    it (one lock order), then the session row by the one conditional UPDATE that
    rotates it: of N concurrent refreshes of one token, one wins.
    """
    sid = token.payload.get(SESSION_CLAIM)
    jti = str(token[_jwt().JTI_CLAIM])
    now = timezone.now()
    if sid is None:
        raise TokenNotValid()  # issued before sessions, or by a host's own means
    live = Session.objects.filter(public_id=sid, revoked_at=None, refresh_jti=jti)
    if not _jwt().ROTATE_REFRESH_TOKENS:
        if _user_for(refresh_token_user_id(token)) is None:
            raise TokenNotValid()
        if not live.update(last_used_at=now, last_ip=meta.ip):
            raise TokenNotValid()
        return {"access": str(token.access_token)}
    new_jti = uuid.uuid4().hex
    try:
        with transaction.atomic():
            user = _user_for(refresh_token_user_id(token), lock=True)
            if user is None:
                raise TokenNotValid()
            if not live.filter(user_id=user.pk).update(
                refresh_jti=new_jti,
                previous_jti=jti,
                rotated_at=now,
                last_used_at=now,
                last_ip=meta.ip,
            ):
                raise _Refused()
            if _jwt().BLACKLIST_AFTER_ROTATION and hasattr(token, "blacklist"):
                from rest_framework_simplejwt.token_blacklist.models import (
                    BlacklistedToken,
                    OutstandingToken,
                )

                OutstandingToken.objects.select_for_update().filter(jti=jti).first()
                if BlacklistedToken.objects.filter(token__jti=jti).exists():
                    raise TokenNotValid()  # revoked while its session was not
                token.blacklist()
            token[_jwt().JTI_CLAIM] = new_jti
            token.set_exp()
            token.set_iat()
            token.outstand()
    except _Refused:
        _refuse(sid, jti, now)
    return {"access": str(token.access_token), "refresh": str(token)}


def _refuse(sid: Any, jti: str, now: Any) -> None:
    """Raise :class:`TokenNotValid` for a token its session did not take; revoke
    the session first when the token is a replay of a rotated-away one."""
    session = Session.objects.select_related("user").filter(public_id=sid).first()
    if session is None or session.is_revoked:
        raise TokenNotValid()
    grace = auth_settings.REFRESH_REUSE_GRACE
    if (
        jti == session.previous_jti
        and session.rotated_at is not None
        and now - session.rotated_at <= grace
    ):
        raise TokenNotValid()  # a concurrent refresh (two tabs) rotated it just now
    with transaction.atomic():
        revoke_session(session.public_id, reason="reuse")
        identity = getattr(session.user, "kinwise_identity", None)
        if identity is not None:
            outbox.queue(
                OutboxEmail.Kind.SESSION_REUSED,
                user=session.user,
                recipient=identity.email,
                context={"device": session.device},
            )
        audit.record(
            "refresh_reused",
            user=session.user,
            extra={"session": str(sid), "device": session.device},
        )
    raise TokenNotValid()


def revoke_session(sid: Any, *, reason: str) -> bool:
    """Revoke the session ``sid`` if it is live (one UPDATE); whether it was."""
    revoked = Session.objects.filter(public_id=sid, revoked_at=None).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )
    remember_revoked([sid])
    return bool(revoked)


def revoke_sessions(sessions: QuerySet[Session], *, reason: str) -> int:
    """Revoke the live sessions among ``sessions``; return how many.

    Their refresh tokens are refused from now on, and their access tokens from
    the next request (the cache learns it when the transaction commits).
    """
    live = sessions.filter(revoked_at=None)
    sids = list(live.values_list("public_id", flat=True))
    if not sids:
        return 0
    count = Session.objects.filter(public_id__in=sids, revoked_at=None).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )
    remember_revoked(sids)
    return count


@sensitive_variables()
def logout(*, refresh: str, meta: RequestMeta) -> None:
    """Revoke the session of ``refresh`` and blacklist the token. A token already
    revoked is accepted again.

    Raises :class:`InvalidToken` for anything that is not a live or revoked
    refresh token of this site.
    """
    claims = refresh_claims(refresh)
    if claims is None:
        raise InvalidToken(INVALID_REFRESH)
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]
    except TokenError:
        if _already_blacklisted(claims):
            _revoke_claimed_session(claims)
            return
        raise InvalidToken(INVALID_REFRESH) from None
    if not hasattr(token, "blacklist"):
        raise ImproperlyConfigured(
            "logout/ needs rest_framework_simplejwt.token_blacklist in INSTALLED_APPS"
        )
    with transaction.atomic():
        _revoke_claimed_session(claims)
        token.blacklist()
    audit.record("logged_out", user=_user_for(refresh_token_user_id(token)), meta=meta)


def _revoke_claimed_session(claims: dict[str, Any]) -> None:
    sid = claims.get(SESSION_CLAIM)
    if sid is not None:
        revoke_session(sid, reason="logout")


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


def _already_blacklisted(claims: dict[str, Any]) -> bool:
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    return BlacklistedToken.objects.filter(
        token__jti=claims.get(_jwt().JTI_CLAIM)
    ).exists()


def revoke_refresh_tokens(
    user: AbstractBaseUser, *, reason: str, keep: Any = None
) -> int:
    """Revoke every session of ``user`` but ``keep`` (a session id, which the
    caller renews), and blacklist every outstanding refresh token of ``user``;
    return how many sessions were revoked.

    The sessions' access tokens are refused from the next request on. Without
    simplejwt's blacklist app only the sessions are revoked (system check
    ``kinwise_auth.W001`` warns).
    """
    from django.apps import apps

    sessions = Session.objects.filter(user_id=user.pk)
    if keep is not None:
        sessions = sessions.exclude(public_id=keep)
    revoked = revoke_sessions(sessions, reason=reason)
    if not apps.is_installed("rest_framework_simplejwt.token_blacklist"):
        return revoked
    from rest_framework_simplejwt.token_blacklist.models import (
        BlacklistedToken,
        OutstandingToken,
    )

    live = OutstandingToken.objects.filter(
        user_id=user.pk, blacklistedtoken__isnull=True
    )
    BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
    )
    return revoked
