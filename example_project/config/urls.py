"""URLs of the example project: the auth API under ``/api/v1/auth/`` (the app
transport, tokens in JSON) and ``/api/v1/auth/browser/`` (the browser transport,
the refresh token in an HttpOnly cookie: docs/spa.md), the admin under
``/admin/`` (its sign-in rate-limited, see ``config.admin_login``)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.admin_login import admin_login

urlpatterns: list[URLPattern | URLResolver] = [
    # Before the admin's own login/ (same path): its sign-in, rate-limited.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    # The browser transport (docs/spa.md): the demo page and the demo SPA use it.
    path("api/v1/auth/browser/", include("kinwise_auth.urls.browser")),
    path("api/v1/auth/", include("kinwise_auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]
if settings.DEBUG:
    # The demo page at /, the paths of the emailed links, and the dev mailbox.
    urlpatterns.append(path("", include("demo.urls")))

# Serves the admin's static files when DEBUG is on, under gunicorn too (no-op when
# DEBUG is off: put a web server or whitenoise in front in production).
urlpatterns += staticfiles_urlpatterns()
