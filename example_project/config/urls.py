"""URLs of the example project: the auth API under ``/api/v1/auth/``."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/", admin.site.urls),
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
