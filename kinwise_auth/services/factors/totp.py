"""TOTP (RFC 6238) with ``pyotp``: 160-bit seeds, 30-second steps, one step of
clock skew either way, and no step accepted twice for one authenticator."""

from __future__ import annotations

import hmac
import io
from datetime import datetime
from typing import Any

import pyotp
import segno
from django.views.decorators.debug import sensitive_variables

from ... import crypto
from ...models import Authenticator

__all__ = [
    "SKEW_STEPS",
    "enabled_authenticator",
    "accept",
    "new_secret",
    "provisioning_uri",
    "qr_svg",
    "sealed",
    "opened",
    "matching_step",
    "code_at",
]

#: Steps of clock skew accepted either way (30 s each).
SKEW_STEPS = 1
_SECRET_LENGTH = 32  # base32 symbols: 160 bits
_CODE_DIGITS = 6


@sensitive_variables()
def new_secret() -> str:
    """A fresh base32 TOTP seed of 160 bits."""
    return pyotp.random_base32(length=_SECRET_LENGTH)


@sensitive_variables()
def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URL an authenticator app scans."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer or None)


@sensitive_variables()
def qr_svg(uri: str) -> str:
    """The QR code of ``uri``: one ``<svg>`` element with its namespace, so it
    shows whether a client inserts it as HTML or parses it as SVG."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(
        buffer, kind="svg", xmldecl=False, nl=False, scale=4, border=2
    )
    return buffer.getvalue().decode()


def _context(user_pk: Any) -> str:
    return f"totp:{user_pk}"


@sensitive_variables()
def sealed(secret: str, user_pk: Any) -> str:
    """``secret`` sealed for storage on ``user_pk``'s authenticator."""
    return crypto.seal(secret, context=_context(user_pk))


@sensitive_variables()
def opened(authenticator: Authenticator, field: str = "secret") -> str:
    """The seed sealed in ``authenticator``'s ``field``, sealed again under the
    current key (saved) when it was under a fallback."""
    result = crypto.unseal(
        getattr(authenticator, field), context=_context(authenticator.user_id)
    )
    if result.stale:
        setattr(authenticator, field, sealed(result.plaintext, authenticator.user_id))
        authenticator.save(update_fields=[field])
    return result.plaintext


@sensitive_variables()
def code_at(secret: str, step: int) -> str:
    """The code of time step ``step`` (what an app shows then)."""
    return str(pyotp.TOTP(secret).generate_otp(step))


@sensitive_variables()
def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step within ``SKEW_STEPS`` of ``now`` whose code is ``code``;
    None if none is. Every candidate is compared, in constant time."""
    # ASCII only: other scripts' digits pass isdigit(), and compare_digest
    # refuses non-ASCII text.
    if len(code) != _CODE_DIGITS or not (code.isascii() and code.isdigit()):
        return None
    current = pyotp.TOTP(secret).timecode(now)
    found = None
    for step in range(current - SKEW_STEPS, current + SKEW_STEPS + 1):
        if hmac.compare_digest(code_at(secret, step), code):
            found = step
    return found


def enabled_authenticator(user: Any) -> Authenticator | None:
    """``user``'s enabled authenticator app, if any."""
    found = Authenticator.objects.filter(
        user_id=user.pk, kind=Authenticator.Kind.TOTP, confirmed_at__isnull=False
    ).first()
    return found if found is not None and found.is_enabled else None


@sensitive_variables()
def accept(user: Any, code: str, now: datetime) -> bool:
    """Whether ``code`` is a code of ``user``'s enabled app for a time step
    newer than the last one accepted; if so that step is now the last.

    Locks the authenticator row (call inside a transaction): of two uses of one
    code at once, one wins. A step accepted once, or an older one, is refused:
    a code seen over a shoulder or replayed from a log is worth nothing.
    """
    authenticator = (
        Authenticator.objects.select_for_update()
        .filter(user_id=user.pk, kind=Authenticator.Kind.TOTP)
        .first()
    )
    if authenticator is None or not authenticator.is_enabled:
        return False
    step = matching_step(opened(authenticator), code, now)
    if step is None or (
        authenticator.last_step is not None and step <= authenticator.last_step
    ):
        return False
    authenticator.last_step = step
    authenticator.last_used_at = now
    authenticator.save(update_fields=["last_step", "last_used_at"])
    return True
