"""Mount with ``path("api/v1/auth/", include("kinwise_auth.urls"))``."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "kinwise_auth"

urlpatterns = [
    path("register/", views.RegisterView.as_view(), name="register"),
    path("verify-email/", views.VerifyEmailView.as_view(), name="verify-email"),
    path(
        "resend-verification/",
        views.ResendVerificationView.as_view(),
        name="resend-verification",
    ),
    path("otp/request/", views.LoginCodeRequestView.as_view(), name="otp-request"),
    path("otp/verify/", views.LoginCodeVerifyView.as_view(), name="otp-verify"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("password/reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path(
        "password/reset/confirm/",
        views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path(
        "password/change/", views.PasswordChangeView.as_view(), name="password-change"
    ),
    path("email/change/", views.EmailChangeView.as_view(), name="email-change"),
    path(
        "email/change/confirm/",
        views.EmailChangeConfirmView.as_view(),
        name="email-change-confirm",
    ),
    path("account/delete/", views.AccountDeleteView.as_view(), name="account-delete"),
    path("reauthenticate/", views.ReauthenticateView.as_view(), name="reauthenticate"),
    path("sessions/", views.SessionsView.as_view(), name="sessions"),
    path(
        "sessions/revoke-others/",
        views.SessionsRevokeOthersView.as_view(),
        name="sessions-revoke-others",
    ),
    path(
        "sessions/<str:session_id>/",
        views.SessionDetailView.as_view(),
        name="session",
    ),
]
