"""Rate limits per client IP and per email, on the shared cache.

Built on django-ratelimit's core API rather than its decorator: the decorator
answers 403 and its ``post:`` keys cannot see JSON bodies. Email keys are keyed
hashes of the normal form, so the cache holds no address and ``A@x.com`` and
``a@X.COM`` share one budget. Counts live in ``RATELIMIT_USE_CACHE``, which must be
shared by every web process.
"""

from __future__ import annotations

import ipaddress
import logging

from django.http import HttpRequest
from django_ratelimit.core import get_usage

from . import crypto
from .conf import auth_settings
from .errors import RateLimited, ServiceUnavailable
from .normalization import normalize_email

__all__ = ["client_ip", "limit", "limit_ip", "limit_email"]

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str:
    """``REMOTE_ADDR``, or the address ``TRUSTED_PROXY_COUNT`` proxies vouch for.

    ``X-Forwarded-For`` is only read when the host says how many proxies it sits
    behind, and then only the entry the last trusted proxy appended: a client
    cannot escape its limit by rotating the header.
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = int(auth_settings.TRUSTED_PROXY_COUNT or 0)
    if proxies <= 0:
        return remote
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    if len(forwarded) < proxies:
        return remote
    candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def limit(request: HttpRequest, scope: str, kind: str, value: str) -> None:
    """Count one hit of ``value`` against ``scope``'s ``kind`` rate.

    Raises :class:`RateLimited` (with the seconds left) over the limit. When the
    cache errors, the request passes (logged) unless ``RATE_LIMIT_FAIL_OPEN`` is
    False, in which case :class:`ServiceUnavailable` is raised.
    """
    rate = auth_settings.rate(scope, kind)
    if not rate:
        return
    try:
        usage = get_usage(
            request,
            group=f"kinwise_auth.{scope}.{kind}",
            key=lambda group, req: value,
            rate=rate,
            increment=True,
        )
    except Exception as exc:
        if auth_settings.RATE_LIMIT_FAIL_OPEN:
            logger.warning(
                "kinwise_auth: rate-limit cache failed (%s); letting the request "
                "through (RATE_LIMIT_FAIL_OPEN)",
                type(exc).__name__,
            )
            return
        logger.error("kinwise_auth: rate-limit cache failed (%s)", type(exc).__name__)
        raise ServiceUnavailable() from None
    if usage is not None and usage["should_limit"]:
        raise RateLimited(retry_after=usage["time_left"])


def limit_ip(request: HttpRequest, scope: str) -> None:
    limit(request, scope, "ip", client_ip(request))


def limit_email(request: HttpRequest, scope: str, email: str) -> None:
    limit(request, scope, "email", crypto.keyed_hash(normalize_email(email)))
