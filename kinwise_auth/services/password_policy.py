"""The host's password policy, applied wherever a password is set."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from ..errors import PasswordRejected

__all__ = ["check_password_policy", "unsaved_user"]


@sensitive_variables()
def check_password_policy(
    password: str, *, user: AbstractBaseUser, field: str = "new_password"
) -> None:
    """Apply ``AUTH_PASSWORD_VALIDATORS`` to ``password`` for ``user``.

    Raises :class:`PasswordRejected` with the validators' messages, reported on
    ``field``.
    """
    try:
        # django-stubs type this as auth.User; any user model works.
        validate_password(password, user=cast(Any, user))
    except ValidationError as exc:
        raise PasswordRejected(list(exc.messages), field=field) from None


def unsaved_user(*, email: str, profile: dict[str, str]) -> AbstractBaseUser:
    """A user not saved anywhere, for the similarity validator to compare a new
    account's password with its address and names (fields the model lacks are
    left out)."""
    user_model = get_user_model()
    names = {k: v for k, v in profile.items() if hasattr(user_model, k)}
    return user_model(**names, **{user_model.get_email_field_name(): email})
