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
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest
from django_ratelimit.core import get_usage

from . import crypto
from .conf import auth_settings
from .errors import RateLimited, ServiceUnavailable
from .normalization import email_key_or_none

__all__ = [
    "client_ip",
    "valid_ip",
    "ip_key",
    "email_key",
    "account_key",
    "limit",
    "limit_failures",
    "forgive",
    "limit_ip",
    "limit_email",
    "limit_account",
    "clear",
    "begin_request",
    "end_request",
    "cache_failed",
    "note_cache_failure",
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


# Once the shared cache failed in a request, what follows in that request skips
# it and answers as if it failed again, rather than wait out its timeout once
# more (a paused Redis would otherwise cost every cache call of the request).
# Outside a request of the package's views nothing is skipped.
_request: ContextVar[object | None] = ContextVar("kinwise_auth_request", default=None)
_failed_in: ContextVar[object | None] = ContextVar("kinwise_auth_failed", default=None)


def begin_request() -> None:
    """Open a request's scope: the shared cache is presumed healthy."""
    _request.set(object())


def end_request() -> None:
    """Close the request's scope."""
    _request.set(None)


def cache_failed() -> bool:
    """Whether the shared cache failed earlier in the current request."""
    scope = _request.get()
    return scope is not None and _failed_in.get() is scope


def note_cache_failure() -> None:
    """Record that the shared cache failed, for the rest of the current request."""
    scope = _request.get()
    if scope is not None:
        _failed_in.set(scope)


def _usage(
    request: HttpRequest, group: str, value: str, rate: str, *, increment: bool
) -> dict[str, Any] | None:
    """django-ratelimit's usage of ``value`` in ``group``; None when limits are off
    or the cache failed open (logged). With ``increment`` the count is raised and
    read in one atomic cache operation."""
    try:
        if cache_failed():
            raise ConnectionError("the cache failed earlier in this request")
        usage: dict[str, Any] | None = get_usage(
            request,
            group=group,
            key=lambda group, req: value,
            rate=rate,
            increment=increment,
        )
    except Exception as exc:
        note_cache_failure()
        if auth_settings.RATE_LIMIT_FAIL_OPEN:
            logger.warning(
                "kinwise_auth: rate-limit cache failed (%s); letting the request "
                "through (RATE_LIMIT_FAIL_OPEN)",
                type(exc).__name__,
            )
            return None
        logger.error("kinwise_auth: rate-limit cache failed (%s)", type(exc).__name__)
        raise ServiceUnavailable() from None
    return usage


def limit(request: HttpRequest, scope: str, kind: str, value: str) -> None:
    """Count one hit of ``value`` against ``scope``'s ``kind`` rate.

    The count is raised and checked in one atomic step (security rule 9): of N
    parallel requests, no more than the budget pass. Raises
    :class:`RateLimited` (with the seconds left) over the limit. When the cache
    errors, the request passes (logged) unless ``RATE_LIMIT_FAIL_OPEN`` is False,
    in which case :class:`ServiceUnavailable` is raised.
    """
    rate = auth_settings.rate(scope, kind)
    if not rate:
        return
    usage = _usage(request, f"kinwise_auth.{scope}.{kind}", value, rate, increment=True)
    if usage is not None and usage["should_limit"]:
        raise RateLimited(retry_after=usage["time_left"])


def limit_failures(request: HttpRequest, scope: str, kind: str, value: str) -> None:
    """Take one attempt from a budget that only failures spend.

    Every attempt is counted up front, atomically, so N parallel attempts cannot
    all pass a check made before any of them failed; an attempt that succeeds is
    given back with :func:`forgive`. Raises :class:`RateLimited` once the
    attempts not forgiven exceed the rate.
    """
    rate = auth_settings.rate(scope, kind)
    if not rate:
        return
    group = f"kinwise_auth.{scope}.{kind}"
    attempts = _usage(request, group, value, rate, increment=True)
    if attempts is None:
        return
    forgiven = _usage(request, f"{group}.forgiven", value, rate, increment=False)
    if attempts["count"] - (forgiven["count"] if forgiven else 0) > attempts["limit"]:
        raise RateLimited(retry_after=attempts["time_left"])


def forgive(request: HttpRequest, scope: str, kind: str, value: str) -> None:
    """Give back an attempt :func:`limit_failures` took, for it succeeded."""
    rate = auth_settings.rate(scope, kind)
    if rate:
        group = f"kinwise_auth.{scope}.{kind}.forgiven"
        _usage(request, group, value, rate, increment=True)


def clear(
    *, ip: str | None = None, email: str | None = None, user_id: Any = None
) -> int:
    """Delete the counters of ``ip``, ``email`` and ``user_id`` in every scope's
    current window; return how many existed.

    For an operator whose user is locked out (429 until the window ends). The
    counters' keys are django-ratelimit's, which hold the window and the rate:
    they are rebuilt here for each configured scope and kind, including the
    failures a sign-in gave back (:func:`forgive`).
    """
    from django.conf import settings
    from django.core.cache import caches
    from django_ratelimit.core import ALL, _get_window, _make_cache_key, _split_rate

    values = {
        "ip": ip_key(ip) if ip else None,
        "email": email_key(email) if email else None,
        "account": account_key(user_id) if user_id is not None else None,
    }
    keys = []
    for scope, rates in auth_settings.RATE_LIMITS.items():
        for kind, value in values.items():
            rate = (rates or {}).get(kind)
            if not rate or value is None:
                continue
            window = _get_window(value, _split_rate(rate)[1])
            for group in (
                f"kinwise_auth.{scope}.{kind}",
                f"kinwise_auth.{scope}.{kind}.forgiven",
            ):
                keys.append(_make_cache_key(group, window, rate, value, ALL))
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    found = len(cache.get_many(keys))
    cache.delete_many(keys)
    return found


def ip_key(ip: str) -> str:
    """What an IP's budget is keyed by: an IPv4 address, or an IPv6 client's
    network of ``IPV6_PREFIX_LENGTH`` bits (security rule 10) — one host holds a
    whole /64, so per address it would have billions of budgets."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        prefix = int(auth_settings.IPV6_PREFIX_LENGTH)
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    return str(address)


def limit_ip(request: HttpRequest, scope: str) -> None:
    """Count the client's IP (or IPv6 network) against ``scope``; may raise
    :class:`RateLimited`."""
    limit(request, scope, "ip", ip_key(client_ip(request)))


def email_key(email: str) -> str:
    """A keyed hash of the address's normal form: the cache holds no address."""
    return crypto.keyed_hash(email_key_or_none(email) or email)


def limit_email(request: HttpRequest, scope: str, email: str) -> None:
    """Count the address (by its normal form) against ``scope``; may raise
    :class:`RateLimited`."""
    limit(request, scope, "email", email_key(email))


def account_key(user_id: object) -> str:
    """What an account's budget is keyed by."""
    return f"user:{user_id}"


def limit_account(request: HttpRequest, scope: str, user_id: object) -> None:
    """Count the account against ``scope``; may raise :class:`RateLimited`."""
    limit(request, scope, "account", account_key(user_id))
