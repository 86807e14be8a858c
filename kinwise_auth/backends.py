"""Sign-in by email, through the identity table's normal form."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from .services.identities import find_identity
from .services.password_login import password_checked, record_password_check

__all__ = ["EmailBackend", "password_checked"]


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
        record_password_check(None)
        address = email if email is not None else username
        if not isinstance(address, str) or not isinstance(password, str):
            return None
        identity = find_identity(address)
        if identity is None:
            get_user_model()().set_password(password)
            return None
        user = identity.user
        correct = user.check_password(password)
        record_password_check((user.pk, correct))
        if correct and self.user_can_authenticate(user):
            return user
        return None
