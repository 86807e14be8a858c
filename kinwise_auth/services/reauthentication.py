"""Proof, for a sensitive change, that the signed-in person holds the account."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.functional import Promise
from django.views.decorators.debug import sensitive_variables

from .. import audit
from ..errors import InvalidCredentials
from .meta import RequestMeta

__all__ = ["require_password"]


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
