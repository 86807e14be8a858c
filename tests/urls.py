from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from .host_views import SignupThenFail

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/auth/", include("kinwise_auth.urls")),
    path("api/v1/auth/browser/", include("kinwise_auth.urls.browser")),
    path("host/signup-then-fail/", SignupThenFail.as_view()),
]
