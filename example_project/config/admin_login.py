"""The admin's sign-in form, rate-limited by kinwise_auth's own limiter.

Every POST to ``/admin/login/`` is counted per client IP and per account (the
username or email typed) under the ``admin_login`` scope of
``KINWISE_AUTH["RATE_LIMITS"]``, in the same shared cache as the API's limits. Over
either budget the answer is 429 with ``Retry-After``, and the password is never
checked. Showing the form (GET) is not counted.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from kinwise_auth import ratelimit
from kinwise_auth.errors import RateLimited, ServiceUnavailable

__all__ = ["SCOPE", "admin_login"]

SCOPE = "admin_login"


def _account_key(typed: str) -> str | None:
    """The budget key of the account ``typed`` names: spellings that sign in to
    one account (the form strips and NFKC-normalises; addresses compare by their
    normal form) share one budget, and the cache never holds what was typed."""
    typed = unicodedata.normalize("NFKC", typed.strip())
    return ratelimit.email_key(typed.casefold()) if typed else None


def _refused(status: int, message: str, retry_after: int | None = None) -> HttpResponse:
    response = HttpResponse(
        message + "\n", status=status, content_type="text/plain; charset=utf-8"
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@never_cache
@sensitive_post_parameters()
def admin_login(
    request: HttpRequest, extra_context: dict[str, Any] | None = None
) -> HttpResponse:
    """``admin.site.login``, behind the ``admin_login`` limits on POST."""
    if request.method == "POST":
        try:
            ratelimit.limit_ip(request, SCOPE)
            key = _account_key(str(request.POST.get("username", "")))
            if key is not None:
                ratelimit.limit(request, SCOPE, "email", key)
        except RateLimited as exc:
            return _refused(
                429,
                f"Too many sign-in attempts. Try again in {exc.retry_after} seconds.",
                exc.retry_after,
            )
        except ServiceUnavailable:  # the cache failed and RATE_LIMIT_FAIL_OPEN is off
            return _refused(503, "Sign-in is unavailable. Please try again later.")
    return admin.site.login(request, extra_context)
