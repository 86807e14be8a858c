"""Passwordless sign-in by a one-time code sent by email."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import audit, crypto, emails
from ..conf import auth_settings
from ..errors import AuthError, CodeExpired, InvalidCode
from ..models import LoginCode, OutboxEmail
from . import sign_in_failures
from .identities import find_identity
from .meta import RequestMeta
from .sessions import SignIn, sign_in

__all__ = ["request_login_code", "verify_login_code"]


def request_login_code(*, email: str, meta: RequestMeta) -> None:
    """Queue a login code for ``email``.

    The request does the same work whatever the address (one lookup, one outbox
    row, one audit row); the delivery task mints and sends a code only to an
    active, verified account, so the answer reveals nothing.
    """
    with transaction.atomic():
        identity = find_identity(email)
        user = identity.user if identity is not None else None
        emails.queue(
            OutboxEmail.Kind.LOGIN_CODE,
            user=user,
            recipient=identity.email if identity is not None else email,
            context={"ip": meta.ip},
        )
        audit.record("login_code_requested", user=user, meta=meta)


@sensitive_variables()
def verify_login_code(*, email: str, code: str, meta: RequestMeta) -> SignIn:
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
                live = (
                    LoginCode.objects.select_for_update()
                    .filter(user=user)
                    .live()
                    .order_by("-created_at")
                    .first()
                )
                signed_in = _check(live, code, now)
                if signed_in:
                    return sign_in(user, method="code", meta=meta)
                if signed_in is None:
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


@sensitive_variables()
def _check(live: LoginCode | None, code: str, now: datetime) -> bool | None:
    """Use ``live`` if ``code`` is it: True; None for the right code too late;
    False for anything else, counting a wrong guess against the code."""
    if live is None or live.attempts >= auth_settings.LOGIN_CODE_MAX_ATTEMPTS:
        return False
    if not crypto.matches(
        crypto.login_code_message(live.user_id, code), live.code_hash
    ):
        live.attempts += 1
        live.save(update_fields=["attempts"])
        return False
    if live.expires_at <= now:
        return None
    live.used_at = now
    live.save(update_fields=["used_at"])
    return True
