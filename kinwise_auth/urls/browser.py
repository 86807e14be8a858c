"""The browser transport: mount beside the app transport, e.g.
``path("api/v1/auth/browser/", include("kinwise_auth.urls.browser"))``.

The same endpoints, with the refresh token only in an ``HttpOnly`` cookie and
Django's CSRF check on every unsafe request; plus ``GET csrf/``. See
:mod:`kinwise_auth.browser` and docs/browser.md.
"""

from __future__ import annotations

from django.urls import path

from ..browser import CsrfView, browser_view
from . import endpoints

__all__ = ["urlpatterns"]

app_name = "kinwise_auth_browser"

urlpatterns = [
    path("csrf/", CsrfView.as_view(), name="csrf"),
    *endpoints(browser_view),
]
