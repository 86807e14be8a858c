"""Passwordless sign-in by a one-time code sent by email."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import audit, crypto, emails
from ..conf import auth_settings
from ..errors import AuthError, CodeExpired, InvalidCode
from ..models import LoginCode, OutboxEmail
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
    or superseded code, and any code once ``LOGIN_CODE_MAX_ATTEMPTS`` wrong
    guesses were made against it; :class:`CodeExpired` only for the right code
    too late. The code row is locked, so N simultaneous uses give one sign-in,
    and a wrong guess is committed before the error is raised (the view is not
    atomic), so the attempt counter holds under ``ATOMIC_REQUESTS``.
    """
    now = timezone.now()
    error: AuthError = InvalidCode()
    with transaction.atomic():
        identity = find_identity(email)
        user = identity.user if identity is not None else None
        live = None
        if identity is not None and identity.user.is_active and identity.is_verified:
            live = (
                LoginCode.objects.select_for_update()
                .filter(user=user)
                .live()
                .order_by("-created_at")
                .first()
            )
        if live is not None and live.attempts < auth_settings.LOGIN_CODE_MAX_ATTEMPTS:
            message = crypto.login_code_message(live.user_id, code)
            if crypto.matches(message, live.code_hash):
                if live.expires_at <= now:
                    error = CodeExpired()
                else:
                    live.used_at = now
                    live.save(update_fields=["used_at"])
                    return sign_in(user, method="code", meta=meta)
            else:
                live.attempts += 1
                live.save(update_fields=["attempts"])
    audit.record(
        "login_failed",
        user=user,
        meta=meta,
        extra={"method": "code", "reason": error.code},
    )
    raise error
