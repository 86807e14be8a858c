"""Thin views: IP limit, validation, email limit, one service call, a response."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import transaction
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import ratelimit, services
from .conf import auth_settings
from .errors import EmailTaken, RequestTooLarge
from .exceptions import exception_handler
from .parsers import BoundedJSONParser
from .serializers import EmailSerializer, RegisterSerializer, VerifyEmailSerializer

__all__ = [
    "AuthAPIView",
    "RegisterView",
    "VerifyEmailView",
    "ResendVerificationView",
]


class AuthAPIView(APIView):
    """The base of every endpoint: its DRF policies are pinned, not the host's.

    A host's ``DEFAULT_*`` settings (session auth and CSRF, ``IsAuthenticated``,
    throttles, form parsers) never leak in. Views opt out of ``ATOMIC_REQUESTS``
    so that counters a service commits survive the error it then raises.
    """

    authentication_classes = ()
    permission_classes = (AllowAny,)
    parser_classes = (BoundedJSONParser,)
    renderer_classes = (JSONRenderer,)
    throttle_classes = ()
    scope: ClassVar[str]
    serializer_class: ClassVar[type[serializers.Serializer[Any]]]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    def get_exception_handler(self) -> Any:
        return exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
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
            ip=ratelimit.client_ip(request) or None, user_agent=user_agent
        )

    def validated(self, request: Request, data: Any) -> dict[str, Any]:
        """IP limit, then validation, then the email limit when there is an email."""
        ratelimit.limit_ip(request, self.scope)
        serializer = self.serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        values: dict[str, Any] = dict(serializer.validated_data)
        if "email" in values:
            ratelimit.limit_email(request, self.scope, values["email"])
        return values


class RegisterView(AuthAPIView):
    scope = "register"
    serializer_class = RegisterSerializer

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


class VerifyEmailView(AuthAPIView):
    """POST ``{"token"}`` is the documented way; GET ``?token=`` serves old links
    but leaves the token in access logs."""

    scope = "verify_email"
    serializer_class = VerifyEmailSerializer

    def post(self, request: Request) -> Response:
        return self._verify(request, request.data)

    def get(self, request: Request) -> Response:
        return self._verify(request, request.query_params)

    def _verify(self, request: Request, data: Any) -> Response:
        token = self.validated(request, data)["token"]
        result = services.verify_email(token=token, meta=self.meta(request))
        message = (
            _("Email already verified")
            if result.already_verified
            else _("Email verified successfully")
        )
        user = result.user
        return Response(
            {
                "message": message,
                "user": {
                    "email": getattr(user, user.get_email_field_name()),
                    "is_active": user.is_active,
                },
            }
        )


class ResendVerificationView(AuthAPIView):
    scope = "resend_verification"
    serializer_class = EmailSerializer

    def post(self, request: Request) -> Response:
        email = self.validated(request, request.data)["email"]
        services.resend_verification(email=email, meta=self.meta(request))
        return Response(
            {"message": _("If the email exists, a verification email has been sent.")}
        )
