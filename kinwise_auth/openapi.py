"""OpenAPI 3 description of the endpoints, for drf-spectacular (the ``openapi`` extra).

Imported by the app only when drf-spectacular is installed. Each view is described
through a view extension (the views stay free of schema code), built when a schema
is generated — so hooks such as ``USER_SERIALIZER`` are read then, not at import:
its request body,
its success answer, and every error it can give — field errors and
``{"detail", "code"}`` bodies (400), 401 where a Bearer token is needed, 403 for an
unverified login, 413, 415, 429 with ``Retry-After``, and 503 when a failing
rate-limit cache is set to fail closed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers

from . import views
from .browser import BrowserTransport, CsrfView, cookie_name
from .conf import auth_settings
from .serializers import OptionalPasswordSerializer, PasskeyRenameSerializer
from .views import passkeys as passkey_views

__all__ = ["ErrorSerializer", "FIELD_ERRORS_SCHEMA"]

TAG = "kinwise-auth"


class SessionJWTScheme(SimpleJWTScheme):
    """The Bearer scheme of the signed-in endpoints (``jwtAuth``), as simplejwt's."""

    target_class = "kinwise_auth.authentication.SessionJWTAuthentication"


class ErrorSerializer(serializers.Serializer[Any]):
    """Every error but a validation error (component ``Error``)."""

    detail = serializers.CharField(help_text="A message for people.")
    code = serializers.CharField(help_text="A stable code for programs.")


ERROR_SCHEMA: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
#: DRF's validation errors: each field (or ``non_field_errors``) to its messages.
FIELD_ERRORS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "minProperties": 1,
}
_RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until the limit lets a request through again.",
)


def _error(description: str, codes: str) -> OpenApiResponse:
    return OpenApiResponse(
        response=ErrorSerializer, description=f"{description} ({codes})"
    )


def _responses(
    success: dict[int, Any], *, errors: str, body: bool = True, extra: Any = None
) -> dict[int, Any]:
    """The success answers plus the errors every endpoint shares."""
    responses: dict[int, Any] = dict(success)
    responses[400] = OpenApiResponse(
        response={"oneOf": [FIELD_ERRORS_SCHEMA, ERROR_SCHEMA]},
        description=f"Field errors, or {errors}.",
    )
    if body:
        responses[413] = _error("The body is over MAX_BODY_SIZE", "request_too_large")
        responses[415] = _error("The body is not JSON", "unsupported_media_type")
    responses[429] = _error("Too many requests; see Retry-After", "rate_limited")
    responses[503] = _error(
        "The rate-limit cache failed and RATE_LIMIT_FAIL_OPEN is off",
        "service_unavailable",
    )
    responses.update(extra or {})
    return responses


def _user() -> Any:
    """The configured ``USER_SERIALIZER``: the user payload of every answer."""
    return auth_settings.USER_SERIALIZER


_INLINE: dict[str, Any] = {}


def _inline(name: str, fields: dict[str, Any], **kwargs: Any) -> Any:
    """One serializer per component name: both transports describe most views,
    and a schema must name one class once."""
    if name not in _INLINE:
        _INLINE[name] = inline_serializer(name, fields=fields, **kwargs)
    return _INLINE[name]


def _message(name: str, **fields: serializers.Field[Any, Any, Any, Any]) -> Any:
    return _inline(name, fields={"message": serializers.CharField(), **fields})


#: Whether the view being described is served by the browser transport: its
#: answers carry no refresh token.
_browser: ContextVar[bool] = ContextVar("kinwise_auth_openapi_browser", default=False)


def _refresh_field(**kwargs: Any) -> dict[str, Any]:
    """``{"refresh": ...}`` in the app transport; nothing in the browser's."""
    return {} if _browser.get() else {"refresh": serializers.CharField(**kwargs)}


def _sign_in() -> Any:
    return _sign_in_with(_user(), _browser.get())


@functools.cache
def _sign_in_with(user_serializer: Any, browser: bool) -> Any:
    # One class per user payload and transport: two endpoints answer it, and a
    # schema must name one component once.
    return inline_serializer(
        "BrowserSignIn" if browser else "SignIn",
        fields={
            "access": serializers.CharField(),
            **_refresh_field(),
            "user": user_serializer(),
        },
    )


_UNAUTHORIZED = {
    401: _error("No valid access token", "not_authenticated, token_not_valid")
}
# A sensitive change without its password or a recent reauthentication.
_factor_change = {
    403: _error(
        "Neither the password nor a recent reauthentication; the body also "
        'lists "methods"',
        "reauthentication_required",
    )
}


Schema = dict[str, Any]


def _describe(view: type[Any], **methods: Callable[[], Schema]) -> None:
    """Register a view extension that decorates ``view``'s methods with schemas,
    each built by its function when a schema is generated."""

    # The view's own docstring, not its base class's.
    description = (view.__dict__.get("__doc__") or "").strip()

    def view_replacement(self: OpenApiViewExtension) -> type[Any]:
        browser = issubclass(self.target, BrowserTransport)
        reset = _browser.set(browser)
        try:
            schemas = {
                method: _extend(
                    description, build(), browser=browser, view=view, method=method
                )
                for method, build in methods.items()
            }
        finally:
            _browser.reset(reset)
        return extend_schema_view(**schemas)(
            type(self.target.__name__, (self.target,), {})
        )

    type(
        f"{view.__name__}Schema",
        (OpenApiViewExtension,),
        {
            "target_class": f"{view.__module__}.{view.__qualname__}",
            # The browser transport serves a subclass of each view.
            "match_subclasses": True,
            "view_replacement": view_replacement,
        },
    )


_CSRF_HEADER = OpenApiParameter(
    "X-CSRFToken",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="The csrf_token of GET csrf/ (the csrftoken cookie's value).",
)


def _extend(
    description: str,
    schema: Schema,
    *,
    browser: bool = False,
    view: Any = None,
    method: str = "get",
) -> Any:
    parameters = [*schema.pop("parameters", []), _RETRY_AFTER]
    if browser and method in ("post", "put", "patch", "delete"):
        parameters.append(_CSRF_HEADER)
        schema["responses"] = {
            **schema["responses"],
            403: _csrf_or(schema["responses"].get(403)),
        }
        if getattr(view, "takes_refresh", False):
            # The refresh token is the cookie's; a body is not read.
            schema["request"] = None
            parameters.append(
                OpenApiParameter(
                    cookie_name()
                    + ("_logout" if issubclass(view, views.LogoutView) else ""),
                    OpenApiTypes.STR,
                    OpenApiParameter.COOKIE,
                    description="The HttpOnly refresh cookie set by a sign-in.",
                )
            )
    return extend_schema(
        tags=[TAG], description=description, parameters=parameters, **schema
    )


def _csrf_or(other: Any) -> OpenApiResponse:
    """The browser transport's 403: a CSRF refusal, or the endpoint's own 403."""
    codes = "csrf_failed" if other is None else f"csrf_failed, {other.description}"
    return OpenApiResponse(
        response=ErrorSerializer,
        description=f"The CSRF check failed, or the endpoint's own 403 ({codes})",
    )


def _post(
    view: type[Any],
    summary: str,
    success: Callable[[], dict[int, Any]],
    *,
    errors: str = "invalid input",
    extra: dict[int, Any] | None = None,
) -> None:
    """Describe ``view``'s POST: its body, ``success()`` and the shared errors."""
    signed_in = issubclass(view, views.SignedInAPIView)
    extra = {**(_UNAUTHORIZED if signed_in else {}), **(extra or {})}
    _describe(
        view,
        post=lambda: {
            "summary": summary,
            "request": view.serializer_class,
            "responses": _responses(success(), errors=errors, extra=extra),
        },
    )


_verified = inline_serializer(
    "EmailVerified",
    fields={
        "message": serializers.CharField(),
        "user": inline_serializer(
            "VerifiedUser",
            fields={
                "email": serializers.EmailField(),
                "is_active": serializers.BooleanField(),
            },
            required=False,
            help_text="Absent when the link was already used: a used link shows "
            "nobody's data.",
        ),
    },
)
_token_errors = "invalid_token, token_expired"

_post(
    views.RegisterView,
    "Register a pending account and email its verification link",
    lambda: {
        201: _message(
            "Registered",
            email=serializers.EmailField(),
            user_id=serializers.IntegerField(
                required=False, help_text="Only with PREVENT_ENUMERATION off."
            ),
        )
    },
)
_describe(
    views.VerifyEmailView,
    post=lambda: {
        "summary": "Verify the email address with the emailed token",
        "request": views.VerifyEmailView.serializer_class,
        "responses": _responses({200: _verified}, errors=_token_errors),
    },
    get=lambda: {
        "summary": "Verify by link (the token ends up in access logs: prefer POST)",
        "parameters": [
            OpenApiParameter("token", OpenApiTypes.STR, OpenApiParameter.QUERY)
        ],
        "responses": _responses({200: _verified}, errors=_token_errors, body=False),
    },
)
_post(
    views.ResendVerificationView,
    "Email a fresh verification link (same answer for every address)",
    lambda: {200: _message("VerificationResent")},
)
_post(
    views.LoginCodeRequestView,
    "Email a one-time login code (same answer for every address)",
    lambda: {200: _message("LoginCodeSent", expires_in=serializers.IntegerField())},
)


def _mfa_required() -> Any:
    return _inline(
        "MfaRequired",
        {
            "mfa_required": serializers.BooleanField(help_text="Always true."),
            "mfa_token": serializers.CharField(
                help_text="For mfa/authenticate/: single use, 5 minutes."
            ),
            "methods": serializers.ListField(
                child=serializers.CharField(),
                help_text='"totp", "passkey", "recovery_code"',
            ),
        },
    )


def _sign_in_or_mfa() -> OpenApiResponse:
    browser = _browser.get()
    return OpenApiResponse(
        response=_either(_sign_in(), _mfa_required(), browser),
        description="Signed in; or, for an account with a second factor, an "
        "mfa_token for mfa/authenticate/ and no tokens.",
    )


_EITHER: dict[bool, Any] = {}


def _either(sign_in: Any, mfa: Any, browser: bool) -> Any:
    # One proxy per transport, for one component name each.
    if browser not in _EITHER or _EITHER[browser].serializers[0] is not sign_in:
        _EITHER[browser] = PolymorphicProxySerializer(
            component_name="BrowserSignInAnswer" if browser else "SignInAnswer",
            serializers=[sign_in, mfa],
            resource_type_field_name=None,
        )
    return _EITHER[browser]


_post(
    views.MfaAuthenticateView,
    "Finish a sign-in with a TOTP or a recovery code",
    lambda: {200: _sign_in()},
    errors="invalid_token, invalid_code",
)
_post(
    views.LoginCodeVerifyView,
    "Sign in with the emailed code",
    lambda: {200: _sign_in_or_mfa()},
    errors="invalid_code, code_expired",
)
_post(
    views.LoginView,
    "Sign in with email and password",
    lambda: {200: _sign_in_or_mfa()},
    errors="invalid_credentials",
    extra={
        403: _error("Right password, address not verified yet", "email_not_verified")
    },
)
_post(
    views.TokenRefreshView,
    "A new access token (and refresh token when rotation is on)",
    lambda: {
        200: _inline(
            "BrowserRefreshed" if _browser.get() else "Refreshed",
            fields={
                "access": serializers.CharField(),
                **_refresh_field(required=False),
            },
        )
    },
    extra={401: _error("The refresh token is not valid", "token_not_valid")},
)
_post(
    views.LogoutView,
    "Blacklist the refresh token",
    lambda: {205: OpenApiResponse(description="Signed out (again 205 if already).")},
    errors="invalid_token",
)
_describe(
    views.MeView,
    get=lambda: {
        "summary": "The signed-in user",
        "responses": _responses(
            {200: _user()}, errors="invalid input", body=False, extra=_UNAUTHORIZED
        ),
    },
)
_post(
    views.PasswordResetView,
    "Email a password reset link (same answer for every address)",
    lambda: {200: _message("PasswordResetSent")},
)
_post(
    views.PasswordResetConfirmView,
    "Set a new password with the emailed token",
    lambda: {200: _message("PasswordReset")},
    errors=_token_errors,
)
_post(
    views.PasswordChangeView,
    "Change the password; answers a fresh token pair",
    lambda: {
        200: _message(
            "BrowserPasswordChanged" if _browser.get() else "PasswordChanged",
            access=serializers.CharField(),
            **_refresh_field(),
        )
    },
    errors="invalid_credentials",
)
_post(
    views.EmailChangeView,
    "Email a confirmation link to the new address (same answer if it is taken)",
    lambda: {200: _message("EmailChangeSent")},
    errors="invalid_credentials",
    extra=_factor_change,
)
_post(
    views.EmailChangeConfirmView,
    "Confirm the new address with the emailed token",
    lambda: {200: _user()},
    errors=f"{_token_errors}, email_taken",
)
_post(
    views.AccountDeleteView,
    "Delete the account",
    lambda: {204: OpenApiResponse(description="Deleted; refresh tokens revoked.")},
    errors="invalid_credentials",
    extra=_factor_change,
)
_post(
    views.ReauthenticateView,
    "Confirm it is you (password, a code of the authenticator app, a passkey or "
    "an emailed code): sensitive changes need no password for a while",
    lambda: {
        200: _inline(
            "Reauthenticated",
            fields={"reauthenticated_until": serializers.DateTimeField()},
        )
    },
    errors="invalid_credentials, invalid_code, code_expired",
)
_session = inline_serializer(
    "Session",
    fields={
        "id": serializers.UUIDField(),
        "device": serializers.CharField(help_text='"Firefox 128 on Ubuntu"'),
        "ip": serializers.IPAddressField(allow_null=True, help_text="Last used from."),
        "created_at": serializers.DateTimeField(),
        "last_used_at": serializers.DateTimeField(),
        "method": serializers.CharField(
            help_text='"password", "code" or "passkey", and a second factor after '
            'a "+": "password+totp"'
        ),
        "current": serializers.BooleanField(help_text="The caller's own session."),
    },
    many=True,
)
_describe(
    views.SessionsView,
    get=lambda: {
        "summary": "The caller's live sessions, most recently used first",
        "responses": _responses(
            {200: _session}, errors="invalid input", body=False, extra=_UNAUTHORIZED
        ),
    },
)
_describe(
    views.SessionDetailView,
    delete=lambda: {
        "summary": "End one of the caller's sessions (its tokens stop working)",
        "responses": _responses(
            {204: OpenApiResponse(description="Ended.")},
            errors="invalid input",
            body=False,
            extra={
                **_UNAUTHORIZED,
                404: _error("No live session of the caller's has this id", "not_found"),
            },
        ),
    },
)
_post(
    views.SessionsRevokeOthersView,
    "End every other session (password, or a recent reauthentication)",
    lambda: {
        200: _inline("SessionsRevoked", fields={"revoked": serializers.IntegerField()})
    },
    errors="invalid_credentials",
    extra={
        403: _error(
            "Neither the password nor a recent reauthentication; the body also "
            'lists "methods"',
            "reauthentication_required",
        )
    },
)
_post(
    views.SessionRevokeConfirmView,
    "Sign out the session a new sign-in email names (signs no one in)",
    lambda: {200: _message("SessionRevokedByLink")},
    errors=_token_errors,
)
_describe(
    views.MfaView,
    get=lambda: {
        "summary": "The caller's second factors (no secrets)",
        "responses": _responses(
            {
                200: _inline(
                    "Factors",
                    {
                        "totp": _inline(
                            "TotpFactor",
                            {
                                "enabled_at": serializers.DateTimeField(),
                                "last_used_at": serializers.DateTimeField(
                                    allow_null=True
                                ),
                            },
                            allow_null=True,
                        ),
                        "recovery_codes_left": serializers.IntegerField(),
                        "passkeys": serializers.IntegerField(),
                    },
                )
            },
            errors="invalid input",
            body=False,
            extra=_UNAUTHORIZED,
        ),
    },
)
_post(
    views.TotpSetupView,
    "Start setting up an authenticator app: its secret, URL and QR code",
    lambda: {
        200: _inline(
            "TotpSetup",
            {
                "secret": serializers.CharField(help_text="Base32, 160 bits."),
                "otpauth_url": serializers.CharField(),
                "qr_svg": serializers.CharField(help_text="An inline SVG element."),
                "expires_in": serializers.IntegerField(help_text="Seconds."),
            },
        )
    },
    errors="invalid_credentials",
    extra=_factor_change,
)
_post(
    views.TotpConfirmView,
    "Enable the app with a code from it; the first factor brings recovery codes",
    lambda: {
        200: _message(
            "TotpEnabled",
            recovery_codes=serializers.ListField(
                child=serializers.CharField(),
                required=False,
                help_text="Only when the account had none left: shown once.",
            ),
        )
    },
    errors="invalid_code, mfa_setup_required",
)
_describe(
    views.TotpView,
    delete=lambda: {
        "summary": "Remove the authenticator app and the recovery codes",
        "request": views.TotpView.serializer_class,
        "responses": _responses(
            {204: OpenApiResponse(description="Removed.")},
            errors="invalid_credentials",
            extra={
                **_UNAUTHORIZED,
                **_factor_change,
                404: _error("No authenticator app is enabled", "not_found"),
            },
        ),
    },
)
_post(
    views.RecoveryCodesView,
    "A new set of ten recovery codes (the old set dies); shown once",
    lambda: {
        200: _inline(
            "RecoveryCodes",
            {"recovery_codes": serializers.ListField(child=serializers.CharField())},
        )
    },
    errors="invalid_credentials, mfa_not_enabled",
    extra=_factor_change,
)
_describe(
    views.ReauthenticationCodeView,
    post=lambda: {
        "summary": "Email a code for reauthenticate/ (an account without a password)",
        "request": None,
        "responses": _responses(
            {
                200: _message(
                    "ReauthenticationCodeSent", expires_in=serializers.IntegerField()
                )
            },
            errors="invalid input",
            body=False,
            extra=_UNAUTHORIZED,
        ),
    },
)
_describe(
    CsrfView,
    get=lambda: {
        "summary": "Set the csrftoken cookie; its value, for the X-CSRFToken header",
        "responses": _responses(
            {200: _inline("Csrf", fields={"csrf_token": serializers.CharField()})},
            errors="invalid input",
            body=False,
        ),
    },
)


# --- passkeys -----------------------------------------------------------------


def _options(name: str, **fields: serializers.Field[Any, Any, Any, Any]) -> Any:
    return _inline(
        name,
        {
            **fields,
            "options": serializers.DictField(
                help_text="The publicKey options of navigator.credentials, in "
                "their JSON form (base64url): PublicKeyCredential.parse"
                "CreationOptionsFromJSON / parseRequestOptionsFromJSON read them."
            ),
        },
    )


def _passkey() -> Any:
    return _inline(
        "Passkey",
        {
            "id": serializers.IntegerField(),
            "name": serializers.CharField(),
            "created_at": serializers.DateTimeField(),
            "last_used_at": serializers.DateTimeField(allow_null=True),
            "synced": serializers.BooleanField(
                help_text="Backed up by its provider (a synced passkey)."
            ),
        },
    )


_no_passkey = {404: _error("The account has no passkey", "not_found")}
_post(
    passkey_views.PasskeyRegisterOptionsView,
    "Creation options for a new passkey (password, or a recent reauthentication)",
    lambda: {200: _options("PasskeyCreationOptions")},
    errors="invalid_credentials",
    extra=_factor_change,
)
_post(
    passkey_views.PasskeyRegisterView,
    "Add the passkey that answers the creation options",
    lambda: {
        201: _inline(
            "PasskeyAdded",
            {
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                "created_at": serializers.DateTimeField(),
                "last_used_at": serializers.DateTimeField(allow_null=True),
                "synced": serializers.BooleanField(),
                "recovery_codes": serializers.ListField(
                    child=serializers.CharField(),
                    required=False,
                    help_text="Only when the account had none left: shown once.",
                ),
            },
        )
    },
    errors="invalid_credentials",
)
_describe(
    passkey_views.PasskeysView,
    get=lambda: {
        "summary": "The caller's passkeys, the newest first",
        "responses": _responses(
            {200: type(_passkey())(many=True)},
            errors="invalid input",
            body=False,
            extra=_UNAUTHORIZED,
        ),
    },
)
_describe(
    passkey_views.PasskeyDetailView,
    patch=lambda: {
        "summary": "Rename one of the caller's passkeys (password, or a recent "
        "reauthentication)",
        "request": PasskeyRenameSerializer,
        "responses": _responses(
            {200: _passkey()},
            errors="invalid_credentials",
            extra={
                **_UNAUTHORIZED,
                **_factor_change,
                404: _error("No passkey of the caller's has this id", "not_found"),
            },
        ),
    },
    delete=lambda: {
        "summary": "Remove one of the caller's passkeys (password, or a recent "
        "reauthentication); with the last second factor go the recovery codes",
        "request": OptionalPasswordSerializer,
        "responses": _responses(
            {204: OpenApiResponse(description="Removed.")},
            errors="invalid_credentials",
            extra={
                **_UNAUTHORIZED,
                **_factor_change,
                404: _error("No passkey of the caller's has this id", "not_found"),
            },
        ),
    },
)
_describe(
    passkey_views.PasskeyLoginOptionsView,
    post=lambda: {
        "summary": "Request options for a passwordless sign-in with a passkey",
        "request": None,
        "responses": _responses(
            {
                200: _options(
                    "PasskeyLoginOptions",
                    challenge_id=serializers.UUIDField(
                        help_text="For passkeys/login/: single use, 5 minutes."
                    ),
                )
            },
            errors="invalid input",
            body=False,
        ),
    },
)
_post(
    passkey_views.PasskeyLoginView,
    "Sign in with a passkey (user verified: no second step)",
    lambda: {200: _sign_in()},
    errors="invalid_credentials",
)
_post(
    passkey_views.MfaPasskeyOptionsView,
    "Request options for a passkey as the second step of a sign-in",
    lambda: {200: _options("PasskeySecondFactorOptions")},
    errors="invalid_token",
    extra=_no_passkey,
)
_post(
    passkey_views.MfaPasskeyAuthenticateView,
    "Finish a sign-in with a passkey",
    lambda: {200: _sign_in()},
    errors="invalid_token, invalid_credentials",
)
_describe(
    passkey_views.ReauthenticationPasskeyOptionsView,
    post=lambda: {
        "summary": 'Request options for reauthenticate/ {"passkey"}',
        "request": None,
        "responses": _responses(
            {200: _options("PasskeyReauthenticationOptions")},
            errors="invalid input",
            body=False,
            extra={**_UNAUTHORIZED, **_no_passkey},
        ),
    },
)
