"""Rate limits per client IP and per email, on the shared cache.

Built on django-ratelimit's core API rather than its decorator: the decorator
answers 403 and its ``post:`` keys cannot see JSON bodies. Email keys are keyed
hashes of the normal form, so the cache holds no address and ``A@x.com`` and
``a@X.COM`` share one budget. Counts live in ``RATELIMIT_USE_CACHE``, which must be
shared by every web process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging

from django.http import HttpRequest
from django_ratelimit.core import get_usage

from . import crypto
from .conf import auth_settings
from .errors import RateLimited, ServiceUnavailable
from .normalization import normalize_email

__all__ = [
    "client_ip",
    "valid_ip",
    "limit",
    "limit_ip",
    "limit_email",
    "limit_account",
    "count_email",
]

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str:
    """``REMOTE_ADDR``, or the address ``TRUSTED_PROXY_COUNT`` proxies vouch for,
    or whatever the host's ``CLIENT_IP_RESOLVER`` returns.

    ``X-Forwarded-For`` is only read when the host says how many proxies it sits
    behind, and then only the entry the last trusted proxy appended: a client
    cannot escape its limit by rotating the header.
    """
    resolver = auth_settings.CLIENT_IP_RESOLVER
    if resolver is not None:
        return str(resolver(request) or "")
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


def valid_ip(value: str) -> str | None:
    """``value`` if it is an IP address (the audit log stores only those)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def limit(
    request: HttpRequest, scope: str, kind: str, value: str, *, increment: bool = True
) -> None:
    """Count one hit of ``value`` against ``scope``'s ``kind`` rate.

    Raises :class:`RateLimited` (with the seconds left) over the limit. With
    ``increment=False`` it only checks the budget is not spent (for limits that
    count failures, see :func:`count_email`). When the cache errors, the request
    passes (logged) unless ``RATE_LIMIT_FAIL_OPEN`` is False, in which case
    :class:`ServiceUnavailable` is raised.
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
            increment=increment,
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
    if usage is None:
        return
    spent = usage["should_limit"] if increment else usage["count"] >= usage["limit"]
    if spent:
        raise RateLimited(retry_after=usage["time_left"])


def limit_ip(request: HttpRequest, scope: str) -> None:
    limit(request, scope, "ip", client_ip(request))


def _email_key(email: str) -> str:
    return crypto.keyed_hash(normalize_email(email))


def limit_email(
    request: HttpRequest, scope: str, email: str, *, increment: bool = True
) -> None:
    limit(request, scope, "email", _email_key(email), increment=increment)


def count_email(request: HttpRequest, scope: str, email: str) -> None:
    """Count a failure against ``email`` without refusing this request."""
    with contextlib.suppress(RateLimited):
        limit(request, scope, "email", _email_key(email))


def limit_account(request: HttpRequest, scope: str, user_id: object) -> None:
    limit(request, scope, "account", f"user:{user_id}")
