"""Email verification: a pending account proves its address with an emailed link."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import audit, emails
from ..errors import InvalidToken
from ..models import LinkToken, OutboxEmail
from .identities import find_identity
from .link_tokens import lock_link, require_live
from .meta import RequestMeta

__all__ = ["Verification", "verify_email", "resend_verification"]


@dataclass(frozen=True)
class Verification:
    user: Any
    already_verified: bool


@sensitive_variables()
def verify_email(*, token: str, meta: RequestMeta) -> Verification:
    """Activate the pending account the link token was minted for.

    Raises :class:`InvalidToken` for an unknown, superseded or foreign-purpose
    token and :class:`TokenExpired` for a live one past its expiry. A token
    already used answers ``already_verified``. The token's row is locked, so N
    simultaneous uses activate once and queue one welcome email. Only a pending
    account (never verified) is activated: an account an admin deactivated stays
    deactivated.
    """
    now = timezone.now()
    with transaction.atomic():
        found = lock_link(token, LinkToken.Purpose.VERIFY_EMAIL)
        if found is None or found[0].superseded_at is not None:
            raise InvalidToken()
        link, identity = found
        if link.used_at is not None or identity.is_verified:
            if link.used_at is None:
                link.used_at = now
                link.save(update_fields=["used_at"])
            return Verification(user=link.user, already_verified=True)
        require_live(link, now)
        user = link.user
        link.used_at = now
        link.save(update_fields=["used_at"])
        identity.verified_at = now
        identity.save(update_fields=["verified_at"])
        user.is_active = True
        user.save(update_fields=["is_active"])
        emails.queue(OutboxEmail.Kind.WELCOME, user=user, recipient=identity.email)
        audit.record("email_verified", user=user, meta=meta)
        return Verification(user=user, already_verified=False)


def resend_verification(*, email: str, meta: RequestMeta) -> None:
    """Queue a fresh verification link if ``email`` belongs to a pending account.

    The request does the same work whatever the address: one lookup, one outbox
    row, one audit row. The delivery task sends a link only to a pending account
    and skips the row otherwise, so the answer cannot reveal the account's state.
    """
    with transaction.atomic():
        identity = find_identity(email)
        user = identity.user if identity is not None else None
        recipient = identity.email if identity is not None else email
        emails.queue(OutboxEmail.Kind.VERIFY_EMAIL, user=user, recipient=recipient)
        audit.record("verification_requested", user=user, meta=meta)
