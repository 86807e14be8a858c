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
]
