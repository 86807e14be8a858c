"""What a signed-in user sees and does with their sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit, outbox
from ..conf import auth_settings
from ..errors import (
    CodeExpired,
    FactorNotFound,
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    ReauthenticationRequired,
    SessionNotFound,
)
from ..models import (
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
    PasskeyChallenge,
    Session,
)
from . import sign_in_failures
from .factors import passkeys, totp
from .identities import lock_user
from .meta import RequestMeta
from .passkey_ceremonies import Refused, open_ceremony, prove, spend_challenge
from .reauthentication import (
    reauthentication_methods,
    require_password,
    require_proof,
)
from .secrets import CodeCheck, lock_link, require_live, use_link, use_login_code
from .sessions import revoke_session, revoke_sessions

__all__ = [
    "SessionSummary",
    "list_sessions",
    "end_session",
    "reauthenticate",
    "reauthentication_passkey_options",
    "revoke_other_sessions",
    "revoke_by_link",
    "request_reauthentication_code",
]

INVALID_REVOKE_LINK = _("This link is invalid or has already been used.")
EXPIRED_REVOKE_LINK = _("This link has expired.")


@dataclass(frozen=True)
class SessionSummary:
    """One live session as its owner sees it."""

    id: str
    device: str
    ip: str | None
    created_at: datetime
    last_used_at: datetime
    method: str
    current: bool


def list_sessions(*, user: AbstractBaseUser, current: Any) -> list[SessionSummary]:
    """The live sessions of ``user``, the most recently used first; ``current``
    is the caller's session id."""
    sessions = Session.objects.filter(user_id=user.pk, revoked_at=None).order_by(
        "-last_used_at", "-pk"
    )
    return [
        SessionSummary(
            id=str(session.public_id),
            device=session.device,
            ip=session.last_ip,
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            method=session.method,
            current=str(session.public_id) == str(current),
        )
        for session in sessions
    ]


def end_session(*, user: AbstractBaseUser, session_id: str, meta: RequestMeta) -> None:
    """Revoke ``user``'s live session ``session_id`` (the caller's own included).

    Raises :class:`SessionNotFound` for an id that is not a live session of the
    user's: another user's id looks exactly like an unknown one.
    """
    try:
        uuid.UUID(session_id)
    except ValueError:
        raise SessionNotFound() from None
    if not Session.objects.filter(
        public_id=session_id, user_id=user.pk, revoked_at=None
    ).exists():
        raise SessionNotFound()
    revoke_session(session_id, user=user, reason="user", meta=meta)


@sensitive_variables()
def reauthenticate(
    *,
    user: AbstractBaseUser,
    session_id: Any,
    meta: RequestMeta,
    password: str | None = None,
    totp_code: str | None = None,
    email_code: str | None = None,
    passkey: Any = None,
) -> datetime:
    """Mark the caller's session reauthenticated by its ``password``, a code of
    its authenticator app (of a time step not used before), one of its
    passkeys (answering :func:`reauthentication_passkey_options`, the user
    verified) or the code ``reauthenticate/email-code/`` emailed; return until
    when that lets it make sensitive changes.

    Raises :class:`InvalidCredentials` for a wrong password or a refused
    passkey, :class:`InvalidCode` for a wrong code and :class:`CodeExpired` for
    the emailed code, too late.
    """
    now = timezone.now()
    if passkey is not None:
        method = "passkey"
        _check_passkey(user, passkey, meta)
    elif password is not None:
        method = "password"
        require_password(
            user,
            password,
            failed_event="reauthentication_failed",
            meta=meta,
            message=_("The password is not correct."),
        )
    else:
        method = "totp" if totp_code is not None else "email_code"
        if method not in reauthentication_methods(user):
            # An account with a second factor proves it with that factor: a
            # mailbox alone must not be enough to remove it.
            raise ReauthenticationRequired(methods=reauthentication_methods(user))
        check = _check_code(user, method, totp_code or email_code or "", now)
        if check is not CodeCheck.USED:
            audit.record(
                "reauthentication_failed",
                user=user,
                meta=meta,
                extra={"reason": "invalid_code", "method": method},
            )
            if check is CodeCheck.EXPIRED:
                raise CodeExpired()
            raise InvalidCode(_("The code is not correct."))
    Session.objects.filter(public_id=session_id, user_id=user.pk).update(
        reauthenticated_at=now
    )
    audit.record("reauthenticated", user=user, meta=meta, extra={"method": method})
    return now + auth_settings.REAUTHENTICATION_TIMEOUT


def reauthentication_passkey_options(*, user: AbstractBaseUser) -> dict[str, Any]:
    """Request options for ``reauthenticate/ {"passkey"}``: one of the
    caller's passkeys, the user verified. :class:`FactorNotFound` without one."""
    allowed = passkeys.credential_ids(user.pk)
    if not allowed:
        raise FactorNotFound(_("No passkey is registered for this account."))
    _row, challenge = open_ceremony(PasskeyChallenge.Purpose.REAUTHENTICATE, user=user)
    return passkeys.request_options(
        challenge=challenge, allow=allowed, require_verification=True
    )


@sensitive_variables()
def _check_passkey(user: AbstractBaseUser, credential: Any, meta: RequestMeta) -> None:
    try:
        challenge = spend_challenge(
            credential, PasskeyChallenge.Purpose.REAUTHENTICATE, user_pk=user.pk
        )
        prove(
            credential,
            challenge=challenge,
            user=user,
            require_verification=True,
            meta=meta,
        )
    except Refused as refused:
        audit.record(
            "reauthentication_failed",
            user=user,
            meta=meta,
            extra={"reason": refused.reason, "method": "passkey"},
        )
        raise InvalidCredentials(_("The passkey could not be checked.")) from None


@sensitive_variables()
def _check_code(user: AbstractBaseUser, method: str, code: str, now: Any) -> CodeCheck:
    """Check a step-up code under the account's locks (user, identity, then the
    code or authenticator). A wrong one counts towards the day's failed code
    checks (``LOGIN_CODE_DAILY_FAILURES``, past which every code is refused) and
    the "someone is trying" notice, as at sign-in; committed before the caller
    raises."""
    with transaction.atomic():
        lock_user(user.pk)
        identity = (
            EmailIdentity.objects.select_for_update().filter(user_id=user.pk).first()
        )
        if identity is None:
            return CodeCheck.WRONG
        identity.user = user  # type: ignore[assignment]
        if sign_in_failures.codes_exhausted(identity, now):
            check = CodeCheck.WRONG
        elif method == "totp":
            accepted = totp.accept(user, code, now)
            check = CodeCheck.USED if accepted else CodeCheck.WRONG
        else:
            check = use_login_code(
                user=user,
                code=code,
                now=now,
                purpose=LoginCode.Purpose.REAUTHENTICATE,
            )
        if check is CodeCheck.WRONG:
            sign_in_failures.record_failure(identity, method="code", now=now)
    return check


@sensitive_variables()
def revoke_other_sessions(
    *,
    user: AbstractBaseUser,
    session_id: Any,
    password: str | None,
    meta: RequestMeta,
) -> int:
    """Revoke every live session of ``user`` but the caller's; return how many.

    Needs ``password``, or the caller's session reauthenticated within
    ``REAUTHENTICATION_TIMEOUT``: raises :class:`ReauthenticationRequired`
    without either, :class:`InvalidCredentials` for a wrong password.
    """
    require_proof(
        user,
        session_id=session_id,
        password=password,
        failed_event="sessions_revoke_failed",
        meta=meta,
        message=_("The password is not correct."),
    )
    with transaction.atomic():
        others = Session.objects.filter(user_id=user.pk).exclude(public_id=session_id)
        return revoke_sessions(others, reason="user", user=user, meta=meta)


@sensitive_variables()
def revoke_by_link(*, token: str, meta: RequestMeta) -> None:
    """Sign out the session a "new sign-in" email's link names, without
    signing in; the link works once.

    Raises :class:`InvalidToken` for an unknown, used or superseded link and
    :class:`TokenExpired` past ``SESSION_REVOKE_LIFETIME``. A session that
    already ended is not an error: the link is used all the same.
    """
    now = timezone.now()
    with transaction.atomic():
        found = lock_link(token, LinkToken.Purpose.SESSION_REVOKE)
        if found is None:
            raise InvalidToken(INVALID_REVOKE_LINK)
        link, _identity = found
        require_live(
            link, now, invalid=INVALID_REVOKE_LINK, expired=EXPIRED_REVOKE_LINK
        )
        use_link(link, now)
        if link.session_id is not None:
            revoke_session(
                link.session_id, user=link.user, reason="notice_link", meta=meta
            )


def request_reauthentication_code(*, user: AbstractBaseUser, meta: RequestMeta) -> None:
    """Email the caller a code for ``reauthenticate/ {"email_code"}``: the proof an
    account without a password or an authenticator app can give. Minted by the
    worker, like every emailed secret."""
    if "email_code" not in reauthentication_methods(user):
        raise ReauthenticationRequired(methods=reauthentication_methods(user))
    identity = EmailIdentity.objects.filter(user_id=user.pk).first()
    if identity is None:
        return
    with transaction.atomic():
        outbox.queue(
            OutboxEmail.Kind.REAUTHENTICATION_CODE,
            user=user,
            recipient=identity.email,
            context={"ip": meta.ip},
        )
        audit.record("reauthentication_code_requested", user=user, meta=meta)
