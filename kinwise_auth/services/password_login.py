"""Sign-in by email and password, through Django's ``authenticate()``."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.contrib.auth import authenticate
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import audit
from ..errors import AuthError, EmailNotVerified, InvalidCredentials
from . import sign_in_failures
from .meta import RequestMeta
from .mfa_sign_in import MfaRequired, sign_in_or_challenge
from .sessions import SignIn

__all__ = ["login_with_password", "record_password_check", "password_checked"]

# (user pk, password correct) of the last account the package's backend checked
# in this thread or task, so the sign-in service can tell a pending account's
# correct password (403 email_not_verified) without hashing it a second time: a
# second hash would make pending accounts slower to fail than unknown addresses.
_last_check: ContextVar[tuple[Any, bool] | None] = ContextVar(
    "kinwise_auth_last_password_check", default=None
)


def record_password_check(check: tuple[Any, bool] | None) -> None:
    """Remember ``(user pk, correct)`` of a backend's password check (or forget)."""
    _last_check.set(check)


def password_checked(user_pk: Any) -> bool | None:
    """Whether the backend's last check of ``user_pk``'s password matched; None if
    the backend did not check that user (then the caller must check itself)."""
    last = _last_check.get()
    _last_check.set(None)
    if last is None or last[0] != user_pk:
        return None
    return last[1]


@sensitive_variables()
def login_with_password(
    *, email: str, password: str, meta: RequestMeta, auth_request: Any = None
) -> SignIn | MfaRequired:
    """Sign in through the configured authentication backends; an account with
    a second factor gets an ``mfa_token`` instead of tokens.

    Raises :class:`InvalidCredentials` for every wrong pair (an unknown address
    costs a password hash too, in the package's backend) and for an account an
    admin deactivated; :class:`EmailNotVerified` only after the correct password
    of a pending account. A failure on an active account counts towards its
    daily "someone is trying to sign in" notice. ``auth_request`` is handed to
    ``authenticate()`` for host backends that need the request; the service
    itself never reads it.
    """
    user = authenticate(auth_request, email=email, password=password)
    if user is not None and user.is_active:
        return sign_in_or_challenge(user, method="password", meta=meta)
    error: AuthError = InvalidCredentials()
    with transaction.atomic():
        identity = sign_in_failures.lock_identity(email)
        if identity is not None and not identity.is_verified:
            correct = password_checked(identity.user_id)
            if correct is None:  # the host's backends did not use ours: check here
                correct = identity.user.check_password(password)
            if correct:
                error = EmailNotVerified()
        elif identity is not None and identity.can_sign_in:
            sign_in_failures.record_failure(
                identity, method="password", now=timezone.now()
            )
    audit.record(
        "login_failed",
        user=identity.user if identity is not None else None,
        meta=meta,
        extra={"method": "password", "reason": error.code},
    )
    raise error
