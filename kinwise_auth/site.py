"""The name the package gives the host's site, in emails and authenticator apps."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings

from .conf import auth_settings

__all__ = ["site_name"]


def site_name() -> str:
    """``SITE_NAME``; unset, the current Site's name where the sites framework is
    installed and ``SITE_ID`` set, else ``FRONTEND_URL``'s host: an adopter's
    emails never carry another product's name."""
    configured = auth_settings.SITE_NAME
    if configured:
        return str(configured)
    if apps.is_installed("django.contrib.sites") and getattr(settings, "SITE_ID", None):
        from django.contrib.sites.models import Site

        try:
            return str(Site.objects.get_current().name)
        except Site.DoesNotExist:
            pass
    return urlsplit(str(auth_settings.FRONTEND_URL or "")).hostname or ""
