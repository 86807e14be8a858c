"""The app transport: tokens in JSON bodies. Mount with
``path("api/v1/auth/", include("kinwise_auth.urls"))``; for browser SPAs, see
:mod:`kinwise_auth.urls.browser`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, path

from .. import views
from ..views import passkeys as passkey_views

__all__ = ["endpoints", "urlpatterns"]

app_name = "kinwise_auth"


def endpoints(serve: Callable[[type[views.AuthAPIView]], Any]) -> list[URLPattern]:
    """Every endpoint, each view served by ``serve`` (the transport)."""
    return [
        path("register/", serve(views.RegisterView), name="register"),
        path("verify-email/", serve(views.VerifyEmailView), name="verify-email"),
        path(
            "resend-verification/",
            serve(views.ResendVerificationView),
            name="resend-verification",
        ),
        path("otp/request/", serve(views.LoginCodeRequestView), name="otp-request"),
        path("otp/verify/", serve(views.LoginCodeVerifyView), name="otp-verify"),
        path("login/", serve(views.LoginView), name="login"),
        path("token/refresh/", serve(views.TokenRefreshView), name="token-refresh"),
        path("logout/", serve(views.LogoutView), name="logout"),
        path("me/", serve(views.MeView), name="me"),
        path("password/reset/", serve(views.PasswordResetView), name="password-reset"),
        path(
            "password/reset/confirm/",
            serve(views.PasswordResetConfirmView),
            name="password-reset-confirm",
        ),
        path(
            "password/change/", serve(views.PasswordChangeView), name="password-change"
        ),
        path("email/change/", serve(views.EmailChangeView), name="email-change"),
        path(
            "email/change/confirm/",
            serve(views.EmailChangeConfirmView),
            name="email-change-confirm",
        ),
        path("account/delete/", serve(views.AccountDeleteView), name="account-delete"),
        path("reauthenticate/", serve(views.ReauthenticateView), name="reauthenticate"),
        path(
            "reauthenticate/email-code/",
            serve(views.ReauthenticationCodeView),
            name="reauthentication-code",
        ),
        path("sessions/", serve(views.SessionsView), name="sessions"),
        path(
            "sessions/revoke-others/",
            serve(views.SessionsRevokeOthersView),
            name="sessions-revoke-others",
        ),
        path(
            "sessions/revoke/confirm/",
            serve(views.SessionRevokeConfirmView),
            name="session-revoke-confirm",
        ),
        path(
            "sessions/<str:session_id>/", serve(views.SessionDetailView), name="session"
        ),
        path("mfa/", serve(views.MfaView), name="mfa"),
        path(
            "mfa/authenticate/",
            serve(views.MfaAuthenticateView),
            name="mfa-authenticate",
        ),
        path("mfa/totp/setup/", serve(views.TotpSetupView), name="mfa-totp-setup"),
        path(
            "mfa/totp/confirm/", serve(views.TotpConfirmView), name="mfa-totp-confirm"
        ),
        path("mfa/totp/", serve(views.TotpView), name="mfa-totp"),
        path(
            "mfa/recovery-codes/",
            serve(views.RecoveryCodesView),
            name="mfa-recovery-codes",
        ),
        path(
            "mfa/authenticate/passkey/options/",
            serve(passkey_views.MfaPasskeyOptionsView),
            name="mfa-passkey-options",
        ),
        path(
            "mfa/authenticate/passkey/",
            serve(passkey_views.MfaPasskeyAuthenticateView),
            name="mfa-passkey-authenticate",
        ),
        path(
            "reauthenticate/passkey/options/",
            serve(passkey_views.ReauthenticationPasskeyOptionsView),
            name="reauthentication-passkey-options",
        ),
        path("passkeys/", serve(passkey_views.PasskeysView), name="passkeys"),
        path(
            "passkeys/register/options/",
            serve(passkey_views.PasskeyRegisterOptionsView),
            name="passkey-register-options",
        ),
        path(
            "passkeys/register/",
            serve(passkey_views.PasskeyRegisterView),
            name="passkey-register",
        ),
        path(
            "passkeys/login/options/",
            serve(passkey_views.PasskeyLoginOptionsView),
            name="passkey-login-options",
        ),
        path(
            "passkeys/login/",
            serve(passkey_views.PasskeyLoginView),
            name="passkey-login",
        ),
        path(
            "passkeys/<str:passkey_id>/",
            serve(passkey_views.PasskeyDetailView),
            name="passkey",
        ),
    ]


def _as_view(view: type[views.AuthAPIView]) -> Any:
    return view.as_view()


urlpatterns = endpoints(_as_view)
