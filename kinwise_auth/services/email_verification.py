"""Email verification: a pending account proves its address with an emailed link."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import audit, outbox
from ..errors import InvalidToken
from ..models import LinkToken, OutboxEmail
from .address_requests import queue_for_address
from .meta import RequestMeta
from .secrets import lock_link, require_live, use_link

__all__ = ["Verification", "verify_email", "resend_verification"]


@dataclass(frozen=True)
class Verification:
    user: AbstractBaseUser
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
                use_link(link, now)
            return Verification(user=link.user, already_verified=True)
        require_live(link, now)
        user = link.user
        use_link(link, now)
        identity.verified_at = now
        identity.save(update_fields=["verified_at"])
        user.is_active = True
        user.save(update_fields=["is_active"])
        outbox.queue(OutboxEmail.Kind.WELCOME, user=user, recipient=identity.email)
        audit.record("email_verified", user=user, meta=meta)
        return Verification(user=user, already_verified=False)


def resend_verification(*, email: str, meta: RequestMeta) -> None:
    """Queue a fresh verification link for ``email``: the same work whatever the
    address; the delivery task sends a link only to a pending account, so the
    answer cannot reveal the account's state."""
    queue_for_address(
        OutboxEmail.Kind.VERIFY_EMAIL,
        email=email,
        event="verification_requested",
        meta=meta,
    )
