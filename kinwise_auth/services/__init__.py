"""The one place for business rules.

Services take plain keyword values and a :class:`RequestMeta`, never a request;
they raise :class:`~kinwise_auth.errors.AuthError`.
"""

from __future__ import annotations

from .email_verification import (
    Verification,
    resend_verification,
    verify_email,
)
from .meta import RequestMeta
from .registration import Registration, register_user

__all__ = [
    "RequestMeta",
    "Registration",
    "register_user",
    "Verification",
    "verify_email",
    "resend_verification",
]
