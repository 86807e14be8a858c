"""Input shapes (strict, bounded) and output payloads."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from .normalization import EmailRefused, normalize

__all__ = [
    "AuthenticatorCodeSerializer",
    "MfaAuthenticateSerializer",
    "ReauthenticateSerializer",
    "StrictCharField",
    "StrictEmailField",
    "StrictUUIDField",
    "RegisterSerializer",
    "TokenSerializer",
    "EmailSerializer",
    "LoginCodeSerializer",
    "LoginSerializer",
    "RefreshSerializer",
    "PasswordResetConfirmSerializer",
    "PasswordChangeSerializer",
    "EmailChangeSerializer",
    "PasswordSerializer",
    "OptionalPasswordSerializer",
    "UserPayloadSerializer",
    "MfaTokenSerializer",
    "MfaPasskeySerializer",
    "PasskeyLoginSerializer",
    "PasskeyRegisterSerializer",
    "PasskeyRenameSerializer",
]

PASSWORD_MAX_LENGTH = 1024  # bounds the hashing cost of a hostile body
# The longest code otp/verify/ accepts; check E009 keeps LOGIN_CODE_LENGTH within.
LOGIN_CODE_MAX_LENGTH = 16


def reject_control_characters(value: str) -> None:
    """Refuse CR, LF and every other control character (header injection)."""
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise serializers.ValidationError(
            _("Control characters are not allowed."), code="invalid"
        )


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers, booleans, lists: only a JSON string."""

    default_error_messages = {"invalid": _("Not a valid string.")}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictUUIDField(serializers.UUIDField):
    """A UUIDField that takes only its JSON string (DRF's also reads integers)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    """An email address given as a string, at most 254 characters, no controls,
    with a safe normal form (:mod:`kinwise_auth.normalization`).

    The validated value is the spelling the package stores and mails to: quotes
    that are not needed are dropped, an international domain is mapped.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)
        self.validators.insert(0, reject_control_characters)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))

    def run_validation(self, data: Any = serializers.empty) -> Any:
        value = super().run_validation(data)
        if not isinstance(value, str) or not value:
            return value
        try:
            return normalize(value).address
        except EmailRefused as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None


def password_field(*, required: bool = True) -> StrictCharField:
    """A write-only password, whitespace kept, bounded (the hash's cost)."""
    return StrictCharField(
        required=required,
        write_only=True,
        trim_whitespace=False,
        max_length=PASSWORD_MAX_LENGTH,
        style={"input_type": "password"},
    )


def name_field() -> StrictCharField:
    """An optional name: a string of at most 150 characters, no controls."""
    return StrictCharField(
        required=False,
        allow_blank=True,
        max_length=150,
        default="",
        validators=[reject_control_characters],
    )


class EmailSerializer(serializers.Serializer[Any]):
    email = StrictEmailField()


class RegisterSerializer(serializers.Serializer[Any]):
    email = StrictEmailField()
    password = password_field()
    password_confirm = password_field()
    first_name = name_field()
    last_name = name_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The password policy runs in register_user(), which a host may call
        # without this serializer.
        check_confirmation(attrs, "password")
        return attrs


class TokenSerializer(serializers.Serializer[Any]):
    token = StrictCharField(max_length=256)


def check_confirmation(attrs: dict[str, Any], field: str) -> None:
    """Raise a ``password_mismatch`` ValidationError on ``<field>_confirm`` unless
    it repeats ``field``."""
    if attrs[field] != attrs[f"{field}_confirm"]:
        raise serializers.ValidationError(
            {f"{field}_confirm": [_("Passwords do not match.")]},
            code="password_mismatch",
        )


class PasswordResetConfirmSerializer(TokenSerializer):
    new_password = password_field()
    new_password_confirm = password_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        check_confirmation(attrs, "new_password")
        return attrs


class PasswordChangeSerializer(serializers.Serializer[Any]):
    current_password = password_field()
    new_password = password_field()
    new_password_confirm = password_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        check_confirmation(attrs, "new_password")
        return attrs


class EmailChangeSerializer(serializers.Serializer[Any]):
    """The new address; the ``password``, or a recent reauthentication."""

    new_email = StrictEmailField()
    password = password_field(required=False)


class PasswordSerializer(serializers.Serializer[Any]):
    password = password_field()


class OptionalPasswordSerializer(serializers.Serializer[Any]):
    """A sensitive change: its ``password``, or a recent reauthentication."""

    password = StrictCharField(
        required=False,
        write_only=True,
        trim_whitespace=False,
        max_length=PASSWORD_MAX_LENGTH,
        style={"input_type": "password"},
    )


def digits_only(value: str) -> None:
    """Raise a ValidationError unless ``value`` is ASCII digits only."""
    if not re.fullmatch(r"[0-9]+", value):
        raise serializers.ValidationError(
            _("Enter the digits of the code."), code="invalid"
        )


class LoginCodeSerializer(serializers.Serializer[Any]):
    email = StrictEmailField()
    code = StrictCharField(max_length=LOGIN_CODE_MAX_LENGTH, validators=[digits_only])


class AuthenticatorCodeSerializer(serializers.Serializer[Any]):
    """A code from an authenticator app: six digits."""

    code = StrictCharField(max_length=16, validators=[digits_only])


class ReauthenticateSerializer(serializers.Serializer[Any]):
    """One proof: the ``password``, a ``totp`` code of the authenticator app, or
    the ``email_code`` of ``reauthenticate/email-code/``."""

    password = StrictCharField(
        required=False,
        write_only=True,
        trim_whitespace=False,
        max_length=PASSWORD_MAX_LENGTH,
        style={"input_type": "password"},
    )
    totp = StrictCharField(required=False, max_length=16, validators=[digits_only])
    email_code = StrictCharField(
        required=False, max_length=LOGIN_CODE_MAX_LENGTH, validators=[digits_only]
    )
    passkey = serializers.DictField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) != 1:
            raise serializers.ValidationError(
                _("Send one proof: password, totp, passkey or email_code."),
                code="one_proof",
            )
        return attrs


class MfaAuthenticateSerializer(serializers.Serializer[Any]):
    """A sign-in's ``mfa_token`` and a TOTP or recovery code (letters, digits,
    hyphens, spaces)."""

    mfa_token = StrictCharField(max_length=256)
    code = StrictCharField(max_length=32)


class MfaTokenSerializer(serializers.Serializer[Any]):
    """A sign-in's ``mfa_token``."""

    mfa_token = StrictCharField(max_length=256)


class MfaPasskeySerializer(MfaTokenSerializer):
    """A sign-in's ``mfa_token`` and a passkey's answer (``credential``, the
    JSON form of the browser's ``PublicKeyCredential``)."""

    credential = serializers.DictField()


class PasskeyLoginSerializer(serializers.Serializer[Any]):
    """The ``challenge_id`` of ``passkeys/login/options/`` and the answer."""

    challenge_id = StrictUUIDField()
    credential = serializers.DictField()


class PasskeyRegisterSerializer(serializers.Serializer[Any]):
    """The browser's answer to the creation options, and a name for the key."""

    credential = serializers.DictField()
    name = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=64,
        validators=[reject_control_characters],
    )


class PasskeyRenameSerializer(OptionalPasswordSerializer):
    """A passkey's new name; the ``password``, or a recent reauthentication."""

    name = StrictCharField(max_length=64, validators=[reject_control_characters])


class LoginSerializer(serializers.Serializer[Any]):
    email = StrictEmailField()
    password = password_field()


class RefreshSerializer(serializers.Serializer[Any]):
    refresh = StrictCharField(max_length=4096)


class UserPayloadSerializer(serializers.Serializer[Any]):
    """The user as the API shows it: ``id``, ``email``, ``first_name``, ``last_name``.

    Works with user models that lack name fields (they read as ``""``). Replace it
    with the ``USER_SERIALIZER`` setting.
    """

    id = serializers.SerializerMethodField()
    email = serializers.SerializerMethodField()
    first_name = serializers.SerializerMethodField()
    last_name = serializers.SerializerMethodField()

    def get_id(self, user: AbstractBaseUser) -> Any:
        return user.pk

    def get_email(self, user: AbstractBaseUser) -> str:
        return str(getattr(user, user.get_email_field_name(), "") or "")

    def get_first_name(self, user: AbstractBaseUser) -> str:
        return str(getattr(user, "first_name", "") or "")

    def get_last_name(self, user: AbstractBaseUser) -> str:
        return str(getattr(user, "last_name", "") or "")
