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

import functools
import uuid
from dataclasses import dataclass
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction
from django.db.models import BooleanField, F, Field, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables
from rest_framework_simplejwt import settings as jwt_settings
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.tokens import RefreshToken

from .. import audit
from ..conf import auth_settings
from ..errors import InvalidToken, TokenJustRotated, TokenNotValid
from ..models import Session
from . import notices
from .devices import device_label, network_of
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
    sid = uuid.uuid4()
    tokens = open_session(user, method=method, meta=meta, sid=sid)
    audit.record(
        "login_succeeded",
        user=user,
        meta=meta,
        extra={"method": method, "session": str(sid)},
    )
    return SignIn(user=user, tokens=tokens)


def open_session(
    user: AbstractBaseUser, *, method: str, meta: RequestMeta, sid: Any = None
) -> dict[str, str]:
    """Open a session of ``user`` (one INSERT, and the cache told it is live
    once the transaction commits); return its token pair. :func:`sign_in` is
    this plus the audit row.

    A sign-in from a device and network the account has not used within
    ``NEW_DEVICE_WINDOW`` queues the owner a "new sign-in" email (one more
    INSERT); the INSERT itself decides, so a known device costs nothing more.
    """
    sid = sid or uuid.uuid4()
    tokens = issue_tokens(user, sid=sid)
    device = device_label(meta.user_agent)
    network = network_of(meta.ip)
    session = Session.objects.create(
        public_id=sid,
        user_id=user.pk,
        method=method,
        device=device,
        first_ip=meta.ip,
        last_ip=meta.ip,
        network=network,
        refresh_jti=_family_jti(tokens["refresh"], sid),
        new_device=_is_new_device(user, device, network),
    )
    remember_live(sid)
    if not isinstance(session.new_device, bool):  # a database with no RETURNING
        session.refresh_from_db(fields=["new_device"])
    if session.new_device:
        notices.queue_new_sign_in(user, session)
    audit.record(
        "session_opened",
        user=user,
        meta=meta,
        extra={"session": str(sid), "method": method, "device": device},
        store=False,
    )
    return tokens


def _is_new_device(user: AbstractBaseUser, device: str, network: str) -> Any:
    """An SQL expression, evaluated by the session's INSERT: whether its owner
    should be told of it. Not for an account's first session (the sign-in after
    verification), nor with ``NEW_SIGN_IN_EMAIL`` off.

    Written as SQL with parameters: building the same ``Case`` of two
    ``Exists`` from querysets cost about a millisecond of CPU per sign-in
    (bench/request_cpu.py), more than the rest of the INSERT."""
    if not auth_settings.NEW_SIGN_IN_EMAIL:
        return False
    since = timezone.now() - auth_settings.NEW_DEVICE_WINDOW
    return RawSQL(
        _new_device_sql(router.db_for_write(Session)),
        [user.pk, device, network, since, user.pk],
        output_field=BooleanField(),
    )


@functools.cache
def _new_device_sql(alias: str) -> str:
    """The expression's SQL, its names quoted for the database ``alias``."""
    quote = connections[alias].ops.quote_name
    table = quote(Session._meta.db_table)
    user, device, network, used = (
        quote(str(cast("Field[Any, Any]", Session._meta.get_field(name)).column))
        for name in ("user", "device", "network", "last_used_at")
    )
    return (
        f"CASE WHEN EXISTS (SELECT 1 FROM {table} WHERE {user} = %s"
        f" AND {device} = %s AND {network} = %s AND {used} >= %s)"
        f" THEN false WHEN EXISTS (SELECT 1 FROM {table} WHERE {user} = %s)"
        " THEN true ELSE false END"
    )


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


def _user_for(
    user_id: Any, *, lock: bool = False, active_only: bool = True
) -> AbstractBaseUser | None:
    """The user a token names; None if gone, or, with ``active_only``, if
    simplejwt's ``USER_AUTHENTICATION_RULE`` refuses them."""
    if user_id is None:
        return None
    users = get_user_model()._default_manager.all()
    if lock:
        users = users.select_for_update(no_key=True)  # as identities.lock_user
    user = users.filter(**{_jwt().USER_ID_FIELD: user_id}).first()
    if user is None or (active_only and not _jwt().USER_AUTHENTICATION_RULE(user)):
        return None
    return user


@sensitive_variables()
def parse_refresh(refresh: str, *, meta: RequestMeta | None = None) -> RefreshToken:
    """A verified refresh token (signature, expiry, type, blacklist).

    Raises :class:`TokenNotValid` otherwise. A genuine token the blacklist
    refuses may be a rotated-away one presented again (rotation blacklists the
    token it replaces): its session is judged as :func:`refresh_session` judges
    a replay, and revoked past ``REFRESH_REUSE_GRACE``.
    """
    try:
        return RefreshToken(refresh)  # type: ignore[arg-type]
    except TokenError:
        # Signed, unexpired, a refresh token: the blacklist refused it.
        claims = refresh_claims(refresh) or {}
        sid = claims.get(SESSION_CLAIM)
        if sid is not None:
            _refuse(sid, str(claims.get(_jwt().JTI_CLAIM)), timezone.now(), meta)
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
            audit.record(
                "session_rotated",
                user=user,
                meta=meta,
                extra={"session": str(sid)},
                store=False,
            )
    except _Refused:
        _refuse(sid, jti, now, meta)
    return {"access": str(token.access_token), "refresh": str(token)}


def _refuse(sid: Any, jti: str, now: Any, meta: RequestMeta | None) -> None:
    """Raise :class:`TokenNotValid` for a token its session did not take; revoke
    the session first when the token is a replay of a rotated-away one."""
    session = Session.objects.select_related("user").filter(public_id=sid).first()
    if session is None or session.is_revoked or jti == session.refresh_jti:
        raise TokenNotValid()  # the live token, blacklisted by other means
    grace = auth_settings.REFRESH_REUSE_GRACE
    if (
        jti == session.previous_jti
        and session.rotated_at is not None
        and now - session.rotated_at <= grace
    ):
        raise TokenJustRotated()  # a concurrent refresh (two tabs) rotated it
    with transaction.atomic():
        audit.record(
            "session_reused",
            user=session.user,
            meta=meta,
            extra={"session": str(sid), "device": session.device},
        )
        revoke_session(session.public_id, user=session.user, reason="reuse", meta=meta)
        notices.queue_session_reused(session)
    raise TokenNotValid()


def revoke_session(
    sid: Any, *, user: Any, reason: str, meta: RequestMeta | None = None
) -> bool:
    """Revoke the session ``sid`` of ``user`` (a user, or its primary key) if it
    is live: one UPDATE, and an audit row when it was; whether it was."""
    user_id = getattr(user, "pk", user)
    revoked = Session.objects.filter(
        public_id=sid, user_id=user_id, revoked_at=None
    ).update(revoked_at=timezone.now(), revoked_reason=reason)
    remember_revoked([sid])
    if revoked:
        if not isinstance(user, AbstractBaseUser):
            user = get_user_model()._default_manager.filter(pk=user_id).first()
        _record_revoked(user, [sid], reason, meta)
    return bool(revoked)


def revoke_sessions(
    sessions: QuerySet[Session],
    *,
    reason: str,
    user: AbstractBaseUser | None = None,
    meta: RequestMeta | None = None,
) -> int:
    """Revoke the live sessions among ``sessions``; return how many.

    Their refresh tokens are refused from now on, and their access tokens from
    the next request (the cache learns it when the transaction commits). Each
    owner gets one ``session_revoked`` audit row; pass ``user`` when every
    session is theirs, which spares reading the owners.
    """
    live = list(sessions.filter(revoked_at=None).values_list("public_id", "user_id"))
    if not live:
        return 0
    sids = [sid for sid, _owner in live]
    count = Session.objects.filter(public_id__in=sids, revoked_at=None).update(
        revoked_at=timezone.now(), revoked_reason=reason
    )
    remember_revoked(sids)
    by_owner: dict[Any, list[Any]] = {}
    for sid, owner in live:
        by_owner.setdefault(owner, []).append(sid)
    owners = (
        {user.pk: user}
        if user is not None and set(by_owner) == {user.pk}
        else get_user_model()._default_manager.in_bulk(list(by_owner))
    )
    for owner_id, owned in by_owner.items():
        _record_revoked(owners.get(owner_id), owned, reason, meta)
    return count


def _record_revoked(
    user: Any, sids: list[Any], reason: str, meta: RequestMeta | None
) -> None:
    audit.record(
        "session_revoked",
        user=user,
        meta=meta,
        extra={"sessions": [str(sid) for sid in sids], "reason": reason},
    )


@sensitive_variables()
def logout(
    *, refresh: str, meta: RequestMeta, claims: dict[str, Any] | None = None
) -> None:
    """Revoke the session of ``refresh`` and blacklist the token. A token already
    revoked is accepted again. ``claims`` are :func:`refresh_claims`' answer
    when the caller has it already.

    Raises :class:`InvalidToken` for anything that is not a live or revoked
    refresh token of this site.
    """
    if claims is None:
        claims = refresh_claims(refresh)
    if claims is None:
        raise InvalidToken(INVALID_REFRESH)
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]
    except TokenError:
        if _already_blacklisted(claims):
            _revoke_claimed_session(claims, claims.get(_jwt().USER_ID_CLAIM), meta)
            return
        raise InvalidToken(INVALID_REFRESH) from None
    if not hasattr(token, "blacklist"):
        raise ImproperlyConfigured(
            "logout/ needs rest_framework_simplejwt.token_blacklist in INSTALLED_APPS"
        )
    user = _user_for(refresh_token_user_id(token), active_only=False)
    with transaction.atomic():
        if user is not None:
            _revoke_claimed_session(claims, user, meta)
        token.blacklist()
        audit.record("logged_out", user=user, meta=meta)


def _revoke_claimed_session(
    claims: dict[str, Any], user: Any, meta: RequestMeta
) -> None:
    """Revoke the session a refresh token of ``user`` (or its pk) names."""
    sid = claims.get(SESSION_CLAIM)
    if sid is not None and user is not None:
        revoke_session(sid, user=user, reason="logout", meta=meta)


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
    revoked = revoke_sessions(sessions, reason=reason, user=user)
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
