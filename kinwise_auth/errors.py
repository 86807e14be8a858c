"""The ``AuthError`` family: every stable error code the API answers with.

Services raise these and know nothing of HTTP; the base view turns them into
``{"detail": ..., "code": ...}`` with the status below. Codes are public API:
never rename one.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

__all__ = [
    "AuthError",
    "InvalidCode",
    "CodeExpired",
    "InvalidCredentials",
    "EmailNotVerified",
    "TokenNotValid",
    "TokenJustRotated",
    "InvalidToken",
    "TokenExpired",
    "RateLimited",
    "ServiceUnavailable",
    "RequestTooLarge",
    "EmailTaken",
    "PasswordRejected",
    "FactorNotFound",
    "MfaSetupRequired",
    "MfaRequiredFirst",
]


class AuthError(Exception):
    """Base of every error the API reports with a stable ``code``."""

    code: str = "auth_error"
    status: int = 400
    default_detail: str | Promise = _("The request could not be completed.")

    def __init__(self, detail: str | Promise | None = None) -> None:
        self.detail = detail if detail is not None else self.default_detail
        super().__init__(str(self.detail))


class InvalidToken(AuthError):
    code = "invalid_token"
    default_detail = _("Invalid verification token.")


class TokenExpired(AuthError):
    code = "token_expired"
    default_detail = _("Verification token has expired.")


class InvalidCode(AuthError):
    """Unknown email, wrong, used, superseded or dead code: one answer for all."""

    code = "invalid_code"
    default_detail = _("Invalid email or OTP code.")


class CodeExpired(AuthError):
    """Only for the right code, too late."""

    code = "code_expired"
    default_detail = _("OTP code has expired.")


class InvalidCredentials(AuthError):
    code = "invalid_credentials"
    default_detail = _("Invalid email or password.")


class EmailNotVerified(AuthError):
    """Only after the correct password of a pending account."""

    code = "email_not_verified"
    status = 403
    default_detail = _("Please verify your email address before signing in.")


class TokenNotValid(AuthError):
    code = "token_not_valid"
    status = 401
    default_detail = _("Token is invalid or expired.")


class TokenJustRotated(TokenNotValid):
    """A refresh token rotated away within ``REFRESH_REUSE_GRACE``: another tab
    refreshed first. The session lives on; the answer is still 401
    ``token_not_valid``, but the browser transport keeps its cookie, which
    already holds the new token."""


class EmailTaken(AuthError):
    """Only raised when enumeration prevention is off."""

    code = "email_taken"
    default_detail = _("A user with this email already exists.")


class RateLimited(AuthError):
    code = "rate_limited"
    status = 429
    default_detail = _("Too many requests. Please try again later.")

    def __init__(self, retry_after: int, detail: str | Promise | None = None) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(detail)


class ServiceUnavailable(AuthError):
    code = "service_unavailable"
    status = 503
    default_detail = _("The service is temporarily unavailable. Please try again.")


class RequestTooLarge(AuthError):
    code = "request_too_large"
    status = 413
    default_detail = _("The request body is too large.")


class ReauthenticationRequired(AuthError):
    """A sensitive change needs a proof made for it: its ``password`` field, or a
    reauthentication of the session within ``REAUTHENTICATION_TIMEOUT``."""

    code = "reauthentication_required"
    status = 403
    default_detail = _("Confirm it is you first.")
    methods: tuple[str, ...] = ("password",)

    def __init__(
        self,
        detail: str | Promise | None = None,
        methods: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(detail)
        if methods is not None:
            self.methods = methods


class SessionNotFound(AuthError):
    """No live session of the caller's has this id."""

    code = "not_found"
    status = 404
    default_detail = _("No such session.")


class FactorNotFound(AuthError):
    """The account has no such second factor enabled."""

    code = "not_found"
    status = 404
    default_detail = _("Two-step sign-in with this method is not enabled.")


class MfaSetupRequired(AuthError):
    """No authenticator set-up under way (never started, confirmed, or older
    than ten minutes)."""

    code = "mfa_setup_required"
    default_detail = _("Start the authenticator set-up again.")


class MfaRequiredFirst(AuthError):
    """Recovery codes go with a second factor: enable one first."""

    code = "mfa_not_enabled"
    default_detail = _("Add an authenticator app or a passkey first.")


class PasswordRejected(AuthError):
    """The new password fails ``AUTH_PASSWORD_VALIDATORS``; reported on ``field``."""

    code = "password_invalid"
    default_detail = _("This password is not allowed.")

    def __init__(self, messages: list[str], field: str = "new_password") -> None:
        self.messages = messages
        self.field = field
        super().__init__(" ".join(messages))
