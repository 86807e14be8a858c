"""Passwordless sign-in by a one-time code sent by email."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import audit
from ..errors import AuthError, CodeExpired, InvalidCode
from ..models import OutboxEmail
from . import sign_in_failures
from .address_requests import queue_for_address
from .meta import RequestMeta
from .mfa_sign_in import MfaRequired, sign_in_or_challenge
from .secrets import CodeCheck, use_login_code
from .sessions import SignIn

__all__ = ["request_login_code", "verify_login_code"]


def request_login_code(*, email: str, meta: RequestMeta) -> None:
    """Queue a login code for ``email``: the same work whatever the address; the
    delivery task mints and sends a code only to an account that can sign in."""
    queue_for_address(
        OutboxEmail.Kind.LOGIN_CODE,
        email=email,
        event="login_code_requested",
        meta=meta,
        context={"ip": meta.ip},
    )


@sensitive_variables()
def verify_login_code(
    *, email: str, code: str, meta: RequestMeta
) -> SignIn | MfaRequired:
    """Sign in with the live code of ``email``'s account.

    Raises :class:`InvalidCode` for an unknown or inactive account, a wrong, used
    or superseded code, any code once ``LOGIN_CODE_MAX_ATTEMPTS`` wrong guesses
    were made against it, and any code once the account failed
    ``LOGIN_CODE_DAILY_FAILURES`` checks in a day; :class:`CodeExpired` only for
    the right code too late. The account's rows are locked (user, identity, then
    the code), so N simultaneous uses give one sign-in and the counters hold; a
    wrong guess is committed before the error is raised (the view is not atomic),
    so they hold under ``ATOMIC_REQUESTS`` too.
    """
    now = timezone.now()
    error: AuthError = InvalidCode()
    with transaction.atomic():
        identity = sign_in_failures.lock_identity(email)
        user = identity.user if identity is not None else None
        if identity is not None and identity.can_sign_in:
            if not sign_in_failures.codes_exhausted(identity, now):
                check = use_login_code(user=identity.user, code=code, now=now)
                if check is CodeCheck.USED:
                    return sign_in_or_challenge(identity.user, method="code", meta=meta)
                if check is CodeCheck.EXPIRED:
                    error = CodeExpired()
            if not isinstance(error, CodeExpired):
                sign_in_failures.record_failure(identity, method="code", now=now)
    audit.record(
        "login_failed",
        user=user,
        meta=meta,
        extra={"method": "code", "reason": error.code},
    )
    raise error
