"""Thin views: IP limit, validation, email limit, one service call, a response."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables
from rest_framework import serializers, status
from rest_framework.metadata import SimpleMetadata
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import settings as jwt_settings
from rest_framework_simplejwt.authentication import JWTAuthentication

from . import ratelimit, services
from .conf import auth_settings
from .errors import EmailTaken, PasswordRejected, RequestTooLarge
from .exceptions import exception_handler
from .models import LinkToken
from .parsers import BoundedJSONParser
from .serializers import (
    EmailChangeSerializer,
    EmailSerializer,
    LoginCodeSerializer,
    LoginSerializer,
    PasswordChangeSerializer,
    PasswordResetConfirmSerializer,
    PasswordSerializer,
    RefreshSerializer,
    RegisterSerializer,
    TokenSerializer,
)

__all__ = [
    "AuthAPIView",
    "RegisterView",
    "VerifyEmailView",
    "ResendVerificationView",
    "LoginCodeRequestView",
    "LoginCodeVerifyView",
    "LoginView",
    "TokenRefreshView",
    "LogoutView",
    "MeView",
    "PasswordResetView",
    "PasswordResetConfirmView",
    "PasswordChangeView",
    "EmailChangeView",
    "EmailChangeConfirmView",
    "AccountDeleteView",
]


class AuthAPIView(APIView):
    """The base of every endpoint: its DRF policies are pinned, not the host's.

    A host's ``DEFAULT_*`` settings (session auth and CSRF, ``IsAuthenticated``,
    throttles, form parsers) never leak in. Views opt out of ``ATOMIC_REQUESTS``
    so that counters a service commits survive the error it then raises.
    """

    authentication_classes: tuple[type[Any], ...] = ()
    permission_classes: tuple[type[Any], ...] = (AllowAny,)
    parser_classes = (BoundedJSONParser,)
    renderer_classes = (JSONRenderer,)
    throttle_classes = ()
    content_negotiation_class = DefaultContentNegotiation
    metadata_class = SimpleMetadata
    versioning_class = None
    scope: ClassVar[str]
    #: The scope whose per-IP rate every request spends before its body is parsed;
    #: when set, ``scope``'s own per-IP rate counts only well-formed requests.
    request_scope: ClassVar[str | None] = None
    serializer_class: ClassVar[type[serializers.Serializer[Any]]]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    def get_exception_handler(self) -> Any:
        return exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Per IP first: before the body is parsed and a token authenticated, so
        # a flood of hostile bodies or bad tokens is limited like any request.
        ratelimit.limit_ip(request, self.request_scope or self.scope)
        super().initial(request, *args, **kwargs)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > int(auth_settings.MAX_BODY_SIZE):
            raise RequestTooLarge()

    def meta(self, request: Request) -> services.RequestMeta:
        user_agent = "".join(
            char
            for char in str(request.META.get("HTTP_USER_AGENT", ""))[:512]
            if char.isprintable()
        )
        return services.RequestMeta(
            ip=ratelimit.valid_ip(ratelimit.client_ip(request)), user_agent=user_agent
        )

    #: The body field whose address keys the per-email limit (None: no such limit).
    email_field: ClassVar[str | None] = "email"

    @sensitive_variables()
    def validated(self, request: Request, data: Any) -> dict[str, Any]:
        """Validation, then the scope's per-IP limit if ``request_scope`` took the
        one before parsing, then the email limit when there is an email."""
        serializer = self.serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        values: dict[str, Any] = dict(serializer.validated_data)
        if self.request_scope:
            ratelimit.limit_ip(request, self.scope)
        if self.email_field and self.email_field in values:
            ratelimit.limit_email(request, self.scope, values[self.email_field])
        return values

    def user_payload(self, user: Any) -> Any:
        return auth_settings.USER_SERIALIZER(user).data

    @sensitive_variables()
    def signed_in(self, request: Request, result: services.SignIn) -> Response:
        """The sign-in answer; Django's ``user_logged_in`` updates ``last_login``."""
        user_logged_in.send(
            sender=result.user.__class__, request=request._request, user=result.user
        )
        return Response({**result.tokens, "user": self.user_payload(result.user)})


class SignedInAPIView(AuthAPIView):
    """An endpoint for a signed-in user: JWT only (a host's session auth never
    applies), limited per IP and per account."""

    authentication_classes = (JWTAuthentication,)
    permission_classes = (IsAuthenticated,)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        ratelimit.limit_account(request, self.scope, request.user.pk)


class LinkAPIView(AuthAPIView):
    """An endpoint that takes an emailed link's ``token``: limited per IP, then,
    once the token names an account, per that account."""

    #: The purpose of the links this endpoint takes.
    link_purpose: ClassVar[str]

    @sensitive_variables()
    def validated(self, request: Request, data: Any) -> dict[str, Any]:
        values = super().validated(request, data)
        if auth_settings.rate(self.scope, "account"):
            owner = services.link_owner(values["token"], self.link_purpose)
            if owner is not None:
                ratelimit.limit_account(request, self.scope, owner)
        return values


def password_rejected(exc: PasswordRejected) -> serializers.ValidationError:
    return serializers.ValidationError({exc.field: exc.messages}, code=exc.code)


class RegisterView(AuthAPIView):
    """The plan's per-IP budget counts registrations, not refused forms: a
    newcomer who mistypes a password twice is not locked out for an hour."""

    scope = "register"
    request_scope = "register_request"
    serializer_class = RegisterSerializer

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        data = self.validated(request, request.data)
        try:
            result = services.register_user(
                email=data["email"],
                password=data["password"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                meta=self.meta(request),
            )
        except EmailTaken as exc:
            raise serializers.ValidationError(
                {"email": [str(exc.detail)]}, code=exc.code
            ) from None
        body: dict[str, Any] = {
            "message": _(
                "Registration successful. Please check your email to verify "
                "your account."
            ),
            "email": result.email,
        }
        if not auth_settings.PREVENT_ENUMERATION:
            body["user_id"] = result.user_id
        return Response(body, status=status.HTTP_201_CREATED)


class VerifyEmailView(LinkAPIView):
    """POST ``{"token"}`` is the documented way; GET ``?token=`` serves old links
    but leaves the token in access logs."""

    scope = "verify_email"
    serializer_class = TokenSerializer
    link_purpose = LinkToken.Purpose.VERIFY_EMAIL

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        return self._verify(request, request.data)

    @sensitive_variables()
    def get(self, request: Request) -> Response:
        data = request.query_params.copy()
        # Keep the token out of error reports of this request (they show the URL
        # and its query); a web server's access log still has it: prefer POST.
        request._request.GET = QueryDict()
        request._request.META["QUERY_STRING"] = ""
        return self._verify(request, data)

    @sensitive_variables()
    def _verify(self, request: Request, data: Any) -> Response:
        token = self.validated(request, data)["token"]
        result = services.verify_email(token=token, meta=self.meta(request))
        if result.already_verified:
            # A used link may have outlived its address: it shows nobody's data.
            return Response({"message": _("Email already verified")})
        user = result.user
        return Response(
            {
                "message": _("Email verified successfully"),
                "user": {
                    "email": getattr(user, user.get_email_field_name()),
                    "is_active": user.is_active,
                },
            }
        )


class ResendVerificationView(AuthAPIView):
    scope = "resend_verification"
    serializer_class = EmailSerializer

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        email = self.validated(request, request.data)["email"]
        services.resend_verification(email=email, meta=self.meta(request))
        return Response(
            {"message": _("If the email exists, a verification email has been sent.")}
        )


class LoginCodeRequestView(AuthAPIView):
    scope = "otp_request"
    serializer_class = EmailSerializer

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        email = self.validated(request, request.data)["email"]
        services.request_login_code(email=email, meta=self.meta(request))
        lifetime = auth_settings.LOGIN_CODE_LIFETIME
        return Response(
            {
                "message": _("If the email exists, an OTP code has been sent."),
                "expires_in": int(lifetime.total_seconds()),
            }
        )


class LoginCodeVerifyView(AuthAPIView):
    scope = "otp_verify"
    serializer_class = LoginCodeSerializer

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        data = self.validated(request, request.data)
        result = services.verify_login_code(
            email=data["email"], code=data["code"], meta=self.meta(request)
        )
        return self.signed_in(request, result)


class LoginView(AuthAPIView):
    """Per email, only failures count: a user who signs in often is not limited.
    A 403 ``email_not_verified`` is a failure too: it answers a password guess."""

    scope = "login"
    serializer_class = LoginSerializer
    email_field = None  # counted below, failures only

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        data = self.validated(request, request.data)
        key = ratelimit.email_key(data["email"])
        ratelimit.limit_failures(request, self.scope, "email", key)
        result = services.login_with_password(
            email=data["email"],
            password=data["password"],
            meta=self.meta(request),
            auth_request=request._request,
        )
        ratelimit.forgive(request, self.scope, "email", key)
        return self.signed_in(request, result)


class TokenRefreshView(AuthAPIView):
    scope = "token_refresh"
    serializer_class = RefreshSerializer

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        token = services.parse_refresh(self.validated(request, request.data)["refresh"])
        ratelimit.limit_account(
            request, self.scope, services.refresh_token_user_id(token)
        )
        return Response(services.refresh_session(token))


class LogoutView(AuthAPIView):
    scope = "logout"
    serializer_class = RefreshSerializer

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        refresh = self.validated(request, request.data)["refresh"]
        claims = services.refresh_claims(refresh)
        if claims is not None:
            user_id = claims.get(jwt_settings.api_settings.USER_ID_CLAIM)
            ratelimit.limit_account(request, self.scope, user_id)
        services.logout(refresh=refresh, meta=self.meta(request))
        return Response(status=status.HTTP_205_RESET_CONTENT)


class MeView(SignedInAPIView):
    scope = "me"

    def get(self, request: Request) -> Response:
        return Response(self.user_payload(request.user))


class PasswordResetView(AuthAPIView):
    scope = "password_reset"
    serializer_class = EmailSerializer

    def post(self, request: Request) -> Response:
        email = self.validated(request, request.data)["email"]
        services.request_password_reset(email=email, meta=self.meta(request))
        return Response(
            {
                "message": _(
                    "If an account uses this email, a password reset link has been "
                    "sent to it."
                )
            }
        )


class PasswordResetConfirmView(LinkAPIView):
    scope = "password_reset_confirm"
    serializer_class = PasswordResetConfirmSerializer
    link_purpose = LinkToken.Purpose.PASSWORD_RESET

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        data = self.validated(request, request.data)
        try:
            services.reset_password(
                token=data["token"],
                new_password=data["new_password"],
                meta=self.meta(request),
            )
        except PasswordRejected as exc:
            raise password_rejected(exc) from None
        return Response(
            {"message": _("Your password has been reset. You can now sign in.")}
        )


class PasswordChangeView(SignedInAPIView):
    scope = "password_change"
    serializer_class = PasswordChangeSerializer

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        data = self.validated(request, request.data)
        try:
            tokens = services.change_password(
                user=request.user,
                current_password=data["current_password"],
                new_password=data["new_password"],
                meta=self.meta(request),
            )
        except PasswordRejected as exc:
            raise password_rejected(exc) from None
        return Response({"message": _("Your password has been changed."), **tokens})


class EmailChangeView(SignedInAPIView):
    scope = "email_change"
    serializer_class = EmailChangeSerializer
    email_field = "new_email"

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        data = self.validated(request, request.data)
        services.request_email_change(
            user=request.user,
            new_email=data["new_email"],
            password=data["password"],
            meta=self.meta(request),
        )
        return Response(
            {
                "message": _(
                    "If the address can be used, a confirmation link has been sent "
                    "to it."
                )
            }
        )


class EmailChangeConfirmView(LinkAPIView):
    scope = "email_change_confirm"
    serializer_class = TokenSerializer
    link_purpose = LinkToken.Purpose.EMAIL_CHANGE

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        token = self.validated(request, request.data)["token"]
        user = services.confirm_email_change(token=token, meta=self.meta(request))
        return Response(self.user_payload(user))


class AccountDeleteView(SignedInAPIView):
    scope = "account_delete"
    serializer_class = PasswordSerializer

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        password = self.validated(request, request.data)["password"]
        services.delete_account(
            user=request.user, password=password, meta=self.meta(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
