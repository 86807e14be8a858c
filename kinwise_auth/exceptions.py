"""The base view's exception handler: one error shape for the whole API.

Validation errors keep DRF's ``{"field": ["message", ...]}``; every other error is
``{"detail": "...", "code": "stable_code"}``, with ``Retry-After`` on a 429.

Unlike DRF's default handler this never marks the database transaction for
rollback: the views opt out of ``ATOMIC_REQUESTS`` so that what a service
committed (an attempt counter, say) stays committed when it then fails.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from .errors import AuthError, RateLimited, ReauthenticationRequired

__all__ = ["exception_handler"]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler for the package's views: ``{"detail", "code"}`` for an
    :class:`AuthError` or API error, DRF's shape for validation errors, and None
    (Django reports it) for anything else."""
    if isinstance(exc, AuthError):
        response = Response(
            {"detail": str(exc.detail), "code": exc.code}, status=exc.status
        )
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, ReauthenticationRequired):
            response.data["methods"] = list(exc.methods)
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug, not client input: let Django report it
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = str(exc.auth_header)  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
    if isinstance(exc, exceptions.ValidationError):
        return Response(exc.detail, status=exc.status_code, headers=headers)
    detail: Any = exc.detail
    code: Any = exc.get_codes()
    if isinstance(detail, dict):
        # simplejwt's InvalidToken: {"detail", "code", "messages"}; keep two keys.
        detail, code = detail.get("detail", ""), detail.get("code", "")
    return Response(
        {"detail": str(detail), "code": code if isinstance(code, str) else "error"},
        status=exc.status_code,
        headers=headers,
    )
