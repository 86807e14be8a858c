"""Proof, for a sensitive change, that the signed-in person holds the account."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone
from django.utils.functional import Promise
from django.views.decorators.debug import sensitive_variables

from .. import audit
from ..conf import auth_settings
from ..errors import InvalidCredentials, ReauthenticationRequired
from ..models import Session
from .factors import second_factors
from .meta import RequestMeta

__all__ = [
    "require_password",
    "require_proof",
    "recently_reauthenticated",
    "reauthentication_methods",
]


@sensitive_variables()
def require_password(
    user: AbstractBaseUser,
    password: str,
    *,
    failed_event: str,
    meta: RequestMeta,
    message: str | Promise | None = None,
) -> None:
    """Check ``user``'s ``password`` before a sensitive change.

    A wrong password is audited as ``failed_event`` (reason
    ``invalid_credentials``) and raises :class:`InvalidCredentials` with
    ``message``.
    """
    if user.check_password(password):
        return
    audit.record(
        failed_event, user=user, meta=meta, extra={"reason": "invalid_credentials"}
    )
    raise InvalidCredentials(message)


@sensitive_variables()
def require_proof(
    user: AbstractBaseUser,
    *,
    session_id: Any,
    password: str | None,
    failed_event: str,
    meta: RequestMeta,
    message: str | Promise | None = None,
) -> None:
    """The proof a sensitive change needs: ``password`` when given (checked as
    :func:`require_password` does), else a reauthentication of the caller's
    session within ``REAUTHENTICATION_TIMEOUT``, else
    :class:`ReauthenticationRequired`."""
    if password is not None:
        require_password(
            user, password, failed_event=failed_event, meta=meta, message=message
        )
    elif not recently_reauthenticated(user, session_id):
        raise ReauthenticationRequired(methods=reauthentication_methods(user))


def reauthentication_methods(user: AbstractBaseUser) -> tuple[str, ...]:
    """How ``user`` can reauthenticate: ``"password"`` when it has a usable one;
    ``"totp"`` with an enabled authenticator app, ``"passkey"`` with a passkey;
    ``"email_code"`` only with neither: with a second factor, a mailbox alone
    is not proof enough to remove it."""
    methods = ["password"] if user.has_usable_password() else []
    factors = second_factors(user)
    methods.extend(f for f in ("totp", "passkey") if f in factors)
    if not factors:
        methods.append("email_code")
    return tuple(methods)


def recently_reauthenticated(user: AbstractBaseUser, session_id: Any) -> bool:
    """Whether ``user``'s live session ``session_id`` was reauthenticated within
    ``REAUTHENTICATION_TIMEOUT``."""
    since = timezone.now() - auth_settings.REAUTHENTICATION_TIMEOUT
    return Session.objects.filter(
        public_id=session_id,
        user_id=user.pk,
        revoked_at=None,
        reauthenticated_at__gte=since,
    ).exists()
