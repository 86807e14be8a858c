"""Sign-in by email and password, through Django's ``authenticate()``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import audit, backends
from ..errors import AuthError, EmailNotVerified, InvalidCredentials
from . import sign_in_failures
from .meta import RequestMeta
from .sessions import SignIn, sign_in

__all__ = ["login_with_password"]


@sensitive_variables()
def login_with_password(
    *, email: str, password: str, meta: RequestMeta, auth_request: Any = None
) -> SignIn:
    """Sign in through the configured authentication backends.

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
        return sign_in(user, method="password", meta=meta)
    error: AuthError = InvalidCredentials()
    with transaction.atomic():
        identity = sign_in_failures.lock_identity(email)
        if identity is not None and not identity.is_verified:
            correct = backends.password_checked(identity.user_id)
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
