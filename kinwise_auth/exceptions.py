"""The base view's exception handler: one error shape for the whole API.

Validation errors keep DRF's ``{"field": ["message", ...]}``; every other error is
``{"detail": "...", "code": "stable_code"}``, with ``Retry-After`` on a 429.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import AuthError, RateLimited

__all__ = ["exception_handler"]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, AuthError):
        response = Response(
            {"detail": str(exc.detail), "code": exc.code}, status=exc.status
        )
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(exc.retry_after)
        return response
    response = drf_exception_handler(exc, context)
    if response is None or isinstance(exc, exceptions.ValidationError):
        return response
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes()
        response.data = {
            "detail": str(exc.detail),
            "code": code if isinstance(code, str) else "error",
        }
    return response
