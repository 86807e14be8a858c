"""Sign-in by email, through the identity table's normal form."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from .services.identities import find_identity

__all__ = ["EmailBackend", "password_checked"]

# (user pk, password correct) of the last account this backend checked in this
# thread or task, so the sign-in service can tell a pending account's correct
# password (403 email_not_verified) without hashing it a second time: a second
# hash would make pending accounts slower to fail than unknown addresses.
_last_check: ContextVar[tuple[Any, bool] | None] = ContextVar(
    "kinwise_auth_last_password_check", default=None
)


def password_checked(user_pk: Any) -> bool | None:
    """Whether the backend's last check of ``user_pk``'s password matched; None if
    the backend did not check that user (then the caller must check itself)."""
    last = _last_check.get()
    _last_check.set(None)
    if last is None or last[0] != user_pk:
        return None
    return last[1]


class EmailBackend(ModelBackend):
    """Authenticate ``email`` (or ``username``, as the admin's form sends it) and
    ``password``.

    The address is matched by its normal form, so ``A@x.com`` signs in the owner
    of ``a@x.com``. An unknown address still costs one password hash, so the time
    taken does not reveal whether an account exists. Inactive users are refused
    (``user_can_authenticate``), as Django's own backend does.
    """

    @sensitive_variables()
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        email: str | None = None,
        **kwargs: Any,
    ) -> Any:
        _last_check.set(None)
        address = email if email is not None else username
        if not isinstance(address, str) or not isinstance(password, str):
            return None
        identity = find_identity(address)
        if identity is None:
            get_user_model()().set_password(password)
            return None
        user = identity.user
        correct = user.check_password(password)
        _last_check.set((user.pk, correct))
        if correct and self.user_can_authenticate(user):
            return user
        return None
