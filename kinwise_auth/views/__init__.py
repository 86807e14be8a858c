"""Thin views: IP limit, validation, email limit, one service call, a response.

The passkey endpoints are in :mod:`.passkeys`, on the bases defined here."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, cast

from django.contrib.auth.base_user import AbstractBaseUser
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

from .. import ratelimit, services
from ..authentication import SessionJWTAuthentication
from ..conf import auth_settings
from ..errors import AuthError, EmailTaken, PasswordRejected, RequestTooLarge
from ..exceptions import exception_handler
from ..models import LinkToken
from ..parsers import BoundedJSONParser
from ..serializers import (
    AuthenticatorCodeSerializer,
    EmailChangeSerializer,
    EmailSerializer,
    LoginCodeSerializer,
    LoginSerializer,
    MfaAuthenticateSerializer,
    OptionalPasswordSerializer,
    PasswordChangeSerializer,
    PasswordResetConfirmSerializer,
    ReauthenticateSerializer,
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
    "SessionsView",
    "SessionDetailView",
    "SessionsRevokeOthersView",
    "ReauthenticateView",
    "SessionRevokeConfirmView",
    "MfaView",
    "TotpSetupView",
    "TotpConfirmView",
    "TotpView",
    "RecoveryCodesView",
    "MfaAuthenticateView",
    "ReauthenticationCodeView",
]


class AuthAPIView(APIView):
    """The base of every endpoint, and the one request pipeline.

    1. ``initial()``: the per-IP budget (``request_scope`` or ``scope``) before
       the body is parsed or a token authenticated; the body size.
    2. ``serializer_class`` validates the body.
    3. The budgets the body names: ``scope``'s per-IP budget when
       ``request_scope`` took the one before parsing, per email
       (``email_field``), per account (:meth:`account_of`). ``spend`` says which
       requests they count: every one, only failures, or only accepted forms.
    4. :meth:`perform` calls the endpoint's one service and builds the answer;
       the errors the service raises become ``{"detail", "code"}`` or, for
       ``field_errors`` and refused passwords, the validation shape.

    The DRF policies are pinned, not the host's: a host's ``DEFAULT_*``
    settings (session auth and CSRF, ``IsAuthenticated``, throttles, form
    parsers) never leak in. Views opt out of ``ATOMIC_REQUESTS`` so that
    counters a service commits survive the error it then raises.
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
    #: The body field whose address keys the per-email budget (None: no such one).
    email_field: ClassVar[str | None] = "email"
    #: Which requests the body's budgets count: ``"every"`` one, only
    #: ``"failures"`` (a success gives its attempt back), or only ``"accepted"``
    #: forms (a password the validators refuse gives it back).
    spend: ClassVar[Literal["every", "failures", "accepted"]] = "every"
    #: Service errors answered in the validation shape, on the named field.
    field_errors: ClassVar[dict[type[AuthError], str]] = {}
    #: The body's ``refresh`` is the token to act on (the browser transport
    #: takes it from its cookie instead).
    takes_refresh: ClassVar[bool] = False
    #: Set when the request ended the caller's own session (the browser
    #: transport then clears its refresh cookie).
    signed_out: bool = False

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    def get_exception_handler(self) -> Any:
        return exception_handler

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # A cache failure is remembered for this request only, whatever ends it.
        ratelimit.begin_request()
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            ratelimit.end_request()

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

    @sensitive_variables()
    def post(self, request: Request) -> Response:
        return self.handle(request, request.data)

    @sensitive_variables()
    def handle(self, request: Request, data: Any) -> Response:
        """Validate ``data``, spend the budgets it names, then :meth:`perform`."""
        serializer = self.serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        values: dict[str, Any] = dict(serializer.validated_data)
        budgets = self.budgets(request, values)
        for kind, key in budgets:
            if self.spend == "every":
                ratelimit.limit(request, self.scope, kind, key)
            else:
                ratelimit.limit_failures(request, self.scope, kind, key)
        try:
            response = self.perform(request, values)
        except AuthError as exc:
            if self.spend == "accepted" and isinstance(exc, PasswordRejected):
                self.give_back(request, budgets)
            raise self.answer_for(exc) from None
        if self.spend == "failures":
            self.give_back(request, budgets)
        return response

    @sensitive_variables()
    def budgets(
        self, request: Request, values: dict[str, Any]
    ) -> list[tuple[str, str]]:
        """The ``(kind, key)`` budgets of ``scope`` that this body spends."""
        budgets = []
        if self.request_scope:
            budgets.append(("ip", ratelimit.ip_key(ratelimit.client_ip(request))))
        if self.email_field and self.email_field in values:
            budgets.append(("email", ratelimit.email_key(values[self.email_field])))
        account = self.account_of(request, values)
        if account is not None:
            budgets.append(("account", ratelimit.account_key(account)))
        return budgets

    def account_of(self, request: Request, values: dict[str, Any]) -> Any:
        """The account the body names, whose per-account budget it spends."""
        return None

    def give_back(self, request: Request, budgets: list[tuple[str, str]]) -> None:
        for kind, key in budgets:
            ratelimit.forgive(request, self.scope, kind, key)

    def answer_for(self, exc: AuthError) -> Exception:
        """``exc``, or the validation error it is answered as."""
        if isinstance(exc, PasswordRejected):
            return serializers.ValidationError({exc.field: exc.messages}, code=exc.code)
        field = self.field_errors.get(type(exc))
        if field is None:
            return exc
        return serializers.ValidationError({field: [str(exc.detail)]}, code=exc.code)

    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        """Call the endpoint's service with the validated ``values``; the answer."""
        raise NotImplementedError

    def meta(self, request: Request) -> services.RequestMeta:
        user_agent = "".join(
            char
            for char in str(request.META.get("HTTP_USER_AGENT", ""))[:512]
            if char.isprintable()
        )
        return services.RequestMeta(
            ip=ratelimit.valid_ip(ratelimit.client_ip(request)), user_agent=user_agent
        )

    def user_payload(self, user: AbstractBaseUser) -> Any:
        return auth_settings.USER_SERIALIZER(user).data

    @sensitive_variables()
    def signed_in(
        self, request: Request, result: services.SignIn | services.MfaRequired
    ) -> Response:
        """The sign-in answer; Django's ``user_logged_in`` updates ``last_login``.
        A sign-in waiting for its second factor answers its ``mfa_token``."""
        if isinstance(result, services.MfaRequired):
            return Response(
                {
                    "mfa_required": True,
                    "mfa_token": result.mfa_token,
                    "methods": list(result.methods),
                }
            )
        user_logged_in.send(
            sender=result.user.__class__, request=request._request, user=result.user
        )
        return Response({**result.tokens, "user": self.user_payload(result.user)})


class SignedInAPIView(AuthAPIView):
    """An endpoint for a signed-in user: JWT only (a host's session auth never
    applies), limited per IP and per account before the body is parsed."""

    authentication_classes = (SessionJWTAuthentication,)
    permission_classes = (IsAuthenticated,)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        ratelimit.limit_account(request, self.scope, request.user.pk)

    @staticmethod
    def account(request: Request) -> AbstractBaseUser:
        """The signed-in user (``IsAuthenticated`` let no anonymous one in)."""
        return cast(AbstractBaseUser, request.user)

    @staticmethod
    def session_id(request: Request) -> Any:
        """The caller's session: its access token's ``sid``."""
        return getattr(request.auth, "payload", {}).get("sid")

    def proof(self, request: Request, values: dict[str, Any]) -> dict[str, Any]:
        """What a change that needs a proof hands its service: the caller's
        user and session, the body's ``password`` (None: a recent
        reauthentication must do), and the request's meta."""
        return {
            "user": self.account(request),
            "session_id": self.session_id(request),
            "password": values.get("password"),
            "meta": self.meta(request),
        }


class LinkAPIView(AuthAPIView):
    """An endpoint that takes an emailed link's ``token``: limited per IP, then,
    once the token names an account, per that account."""

    #: The purpose of the links this endpoint takes.
    link_purpose: ClassVar[str]

    @sensitive_variables()
    def account_of(self, request: Request, values: dict[str, Any]) -> Any:
        if not auth_settings.rate(self.scope, "account"):
            return None  # no budget: spare the query
        return services.link_owner(values["token"], self.link_purpose)


class RegisterView(AuthAPIView):
    """The plan's per-IP and per-email budgets count registrations, not refused
    forms: a newcomer who mistypes a password twice is not locked out for an
    hour. Every request spends ``register_request`` before parsing."""

    scope = "register"
    request_scope = "register_request"
    serializer_class = RegisterSerializer
    spend = "accepted"
    field_errors = {EmailTaken: "email"}

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        result = services.register_user(
            email=values["email"],
            password=values["password"],
            first_name=values["first_name"],
            last_name=values["last_name"],
            meta=self.meta(request),
        )
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
    def get(self, request: Request) -> Response:
        data = request.query_params.copy()
        # Keep the token out of error reports of this request (they show the URL
        # and its query); a web server's access log still has it: prefer POST.
        request._request.GET = QueryDict()
        request._request.META["QUERY_STRING"] = ""
        return self.handle(request, data)

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        result = services.verify_email(token=values["token"], meta=self.meta(request))
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

    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        services.resend_verification(email=values["email"], meta=self.meta(request))
        return Response(
            {"message": _("If the email exists, a verification email has been sent.")}
        )


class LoginCodeRequestView(AuthAPIView):
    scope = "otp_request"
    serializer_class = EmailSerializer

    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        services.request_login_code(email=values["email"], meta=self.meta(request))
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
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        result = services.verify_login_code(
            email=values["email"], code=values["code"], meta=self.meta(request)
        )
        return self.signed_in(request, result)


class LoginView(AuthAPIView):
    """Per email, only failures count: a user who signs in often is not limited.
    A 403 ``email_not_verified`` is a failure too: it answers a password guess."""

    scope = "login"
    serializer_class = LoginSerializer
    spend = "failures"

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        result = services.login_with_password(
            email=values["email"],
            password=values["password"],
            meta=self.meta(request),
            auth_request=request._request,
        )
        return self.signed_in(request, result)


class TokenRefreshView(AuthAPIView):
    """Limited per IP, then, once the token is verified, per its account."""

    scope = "token_refresh"
    serializer_class = RefreshSerializer
    takes_refresh = True

    @sensitive_variables()
    def account_of(self, request: Request, values: dict[str, Any]) -> Any:
        # Verified first (signature, expiry, revocation): a token that is not
        # live is a 401 that spends no account's budget. Parsed once.
        values["refresh"] = services.parse_refresh(
            values["refresh"], meta=self.meta(request)
        )
        return services.refresh_token_user_id(values["refresh"])

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        return Response(
            services.refresh_session(values["refresh"], meta=self.meta(request))
        )


class LogoutView(AuthAPIView):
    """Limited per IP, then, for a genuine token (revoked or not), per its account."""

    scope = "logout"
    serializer_class = RefreshSerializer
    takes_refresh = True

    @sensitive_variables()
    def account_of(self, request: Request, values: dict[str, Any]) -> Any:
        # Verified once: the claims are kept for the service.
        claims = values["claims"] = services.refresh_claims(values["refresh"])
        if claims is None:
            return None
        return claims.get(jwt_settings.api_settings.USER_ID_CLAIM)

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        self.signed_out = True
        services.logout(
            refresh=values["refresh"],
            meta=self.meta(request),
            claims=values.get("claims"),
        )
        return Response(status=status.HTTP_205_RESET_CONTENT)


class MeView(SignedInAPIView):
    scope = "me"
    http_method_names = ["get", "head", "options"]

    def get(self, request: Request) -> Response:
        return Response(self.user_payload(self.account(request)))


class PasswordResetView(AuthAPIView):
    scope = "password_reset"
    serializer_class = EmailSerializer

    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        services.request_password_reset(email=values["email"], meta=self.meta(request))
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
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        services.reset_password(
            token=values["token"],
            new_password=values["new_password"],
            meta=self.meta(request),
        )
        return Response(
            {"message": _("Your password has been reset. You can now sign in.")}
        )


class PasswordChangeView(SignedInAPIView):
    scope = "password_change"
    serializer_class = PasswordChangeSerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        tokens = services.change_password(
            user=self.account(request),
            current_password=values["current_password"],
            new_password=values["new_password"],
            meta=self.meta(request),
            session_id=self.session_id(request),
        )
        return Response({"message": _("Your password has been changed."), **tokens})


class EmailChangeView(SignedInAPIView):
    scope = "email_change"
    serializer_class = EmailChangeSerializer
    email_field = "new_email"

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        services.request_email_change(
            new_email=values["new_email"],
            **self.proof(request, values),
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
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        user = services.confirm_email_change(
            token=values["token"], meta=self.meta(request)
        )
        return Response(self.user_payload(user))


class AccountDeleteView(SignedInAPIView):
    scope = "account_delete"
    serializer_class = OptionalPasswordSerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        services.delete_account(
            **self.proof(request, values),
        )
        self.signed_out = True
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionsView(SignedInAPIView):
    """The caller's live sessions, the most recently used first."""

    scope = "sessions"
    http_method_names = ["get", "head", "options"]

    def get(self, request: Request) -> Response:
        sessions = services.list_sessions(
            user=self.account(request), current=self.session_id(request)
        )
        return Response(
            [
                {
                    "id": s.id,
                    "device": s.device,
                    "ip": s.ip,
                    "created_at": s.created_at,
                    "last_used_at": s.last_used_at,
                    "method": s.method,
                    "current": s.current,
                }
                for s in sessions
            ]
        )


class SessionDetailView(SignedInAPIView):
    """``DELETE``: end one of the caller's sessions (this one included)."""

    scope = "sessions"
    http_method_names = ["delete", "options"]

    def delete(self, request: Request, session_id: str) -> Response:
        services.end_session(
            user=self.account(request), session_id=session_id, meta=self.meta(request)
        )
        self.signed_out = str(session_id) == str(self.session_id(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionsRevokeOthersView(SignedInAPIView):
    """Every other session ends; needs ``password`` or a recent reauthentication."""

    scope = "sessions"
    serializer_class = OptionalPasswordSerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        revoked = services.revoke_other_sessions(
            **self.proof(request, values),
        )
        return Response({"revoked": revoked})


class ReauthenticateView(SignedInAPIView):
    """Prove it is you: the session may make sensitive changes for a while."""

    scope = "reauthenticate"
    serializer_class = ReauthenticateSerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        until = services.reauthenticate(
            totp_code=values.get("totp"),
            email_code=values.get("email_code"),
            passkey=values.get("passkey"),
            **self.proof(request, values),
        )
        return Response({"reauthenticated_until": until})


class SessionRevokeConfirmView(LinkAPIView):
    """The link of a "new sign-in" email: signs that session out, signs no one in."""

    scope = "session_revoke_confirm"
    serializer_class = TokenSerializer
    link_purpose = LinkToken.Purpose.SESSION_REVOKE

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        services.revoke_by_link(token=values["token"], meta=self.meta(request))
        return Response({"message": _("That session is signed out.")})


class MfaView(SignedInAPIView):
    """The caller's second factors, without their secrets."""

    scope = "mfa"
    http_method_names = ["get", "head", "options"]

    def get(self, request: Request) -> Response:
        status_ = services.factors_status(self.account(request))
        totp = status_.totp
        return Response(
            {
                "totp": None
                if totp is None
                else {
                    "enabled_at": totp.confirmed_at,
                    "last_used_at": totp.last_used_at,
                },
                "recovery_codes_left": status_.recovery_codes_left,
                "passkeys": status_.passkeys,
            }
        )


class TotpSetupView(SignedInAPIView):
    """A new authenticator-app secret, pending until a code confirms it."""

    scope = "mfa"
    serializer_class = OptionalPasswordSerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        setup = services.setup_totp(
            **self.proof(request, values),
        )
        return Response(
            {
                "secret": setup.secret,
                "otpauth_url": setup.otpauth_url,
                "qr_svg": setup.qr_svg,
                "expires_in": setup.expires_in,
            }
        )


class TotpConfirmView(SignedInAPIView):
    """A code from the app enables it; the first factor brings recovery codes."""

    scope = "mfa"
    serializer_class = AuthenticatorCodeSerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        codes = services.confirm_totp(
            user=self.account(request), code=values["code"], meta=self.meta(request)
        )
        answer: dict[str, Any] = {"message": _("The authenticator app is enabled.")}
        if codes is not None:
            answer["recovery_codes"] = codes
        return Response(answer)


class TotpView(SignedInAPIView):
    """``DELETE``: remove the authenticator app (``password`` or a recent
    reauthentication)."""

    scope = "mfa"
    serializer_class = OptionalPasswordSerializer
    http_method_names = ["delete", "options"]

    @sensitive_variables()
    def delete(self, request: Request) -> Response:
        return self.handle(request, request.data)

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        services.disable_totp(
            **self.proof(request, values),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecoveryCodesView(SignedInAPIView):
    """A new set of recovery codes, shown once; the old set dies."""

    scope = "mfa"
    serializer_class = OptionalPasswordSerializer

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        codes = services.renew_recovery_codes(
            **self.proof(request, values),
        )
        return Response({"recovery_codes": codes})


class MfaAuthenticateView(AuthAPIView):
    """The second step of a sign-in: the ``mfa_token`` and a code. Limited per
    IP, then per the account the token was made for."""

    scope = "mfa_authenticate"
    serializer_class = MfaAuthenticateSerializer
    email_field = None

    @sensitive_variables()
    def account_of(self, request: Request, values: dict[str, Any]) -> Any:
        if not auth_settings.rate(self.scope, "account"):
            return None
        # Kept for the service, which would otherwise read it a second time.
        values["owner"] = services.challenge_owner(values["mfa_token"])
        return values["owner"]

    @sensitive_variables()
    def perform(self, request: Request, values: dict[str, Any]) -> Response:
        result = services.complete(
            mfa_token=values["mfa_token"],
            code=values["code"],
            meta=self.meta(request),
            owner=values.get("owner"),
        )
        return self.signed_in(request, result)


class ReauthenticationCodeView(SignedInAPIView):
    """Email a code for ``reauthenticate/``: how an account that signs in by
    emailed code proves it is itself before a sensitive change."""

    scope = "reauthentication_code"
    http_method_names = ["post", "options"]

    def post(self, request: Request) -> Response:
        services.request_reauthentication_code(
            user=self.account(request), meta=self.meta(request)
        )
        lifetime = auth_settings.LOGIN_CODE_LIFETIME
        return Response(
            {
                "message": _("A code is on its way to your email address."),
                "expires_in": int(lifetime.total_seconds()),
            }
        )
