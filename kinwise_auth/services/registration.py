"""Registration: one pending account per address, verified by an emailed link."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables

from .. import audit, emails
from ..conf import auth_settings
from ..errors import EmailTaken
from ..models import OutboxEmail
from .identities import create_pending_user, find_identity, spend_like_a_new_account
from .meta import RequestMeta

__all__ = ["Registration", "register_user"]


@dataclass(frozen=True)
class Registration:
    """What the caller may tell the client. ``user_id`` is None for a taken address."""

    email: str
    user_id: int | None


@sensitive_variables()
def register_user(
    *,
    email: str,
    password: str,
    first_name: str = "",
    last_name: str = "",
    meta: RequestMeta,
) -> Registration:
    """Create a pending account for ``email`` and queue its verification link.

    When the address is already held (by its normal form) and enumeration
    prevention is on, the answer looks the same: the holder is emailed instead —
    an "account exists" notice if verified, a fresh verification link if still
    pending. With prevention off, raises :class:`EmailTaken`.
    Twenty racing registrations of one address create one user.
    """
    profile = {"first_name": first_name, "last_name": last_name}
    with transaction.atomic():
        identity = find_identity(email)
        if identity is None:
            try:
                user, identity = create_pending_user(
                    email=email, password=password, profile=profile
                )
            except IntegrityError:
                # Lost a race for the address, or a user made outside the package
                # (not yet backfilled) holds it in a unique user-model column.
                identity = find_identity(email)
            else:
                emails.queue(OutboxEmail.Kind.VERIFY_EMAIL, user=user, recipient=email)
                audit.record("user_registered", user=user, meta=meta)
                return Registration(email=email, user_id=user.pk)

        if not auth_settings.PREVENT_ENUMERATION:
            raise EmailTaken()
        spend_like_a_new_account(password)
        if identity is None:
            holder, recipient = None, email
            kind = OutboxEmail.Kind.ACCOUNT_EXISTS
        else:
            # To the stored address, never the look-alike just typed (CVE-2019-19844).
            holder, recipient = identity.user, identity.email
            kind = (
                OutboxEmail.Kind.ACCOUNT_EXISTS
                if identity.is_verified
                else OutboxEmail.Kind.VERIFY_EMAIL
            )
        emails.queue(kind, user=holder, recipient=recipient)
        audit.record("registration_for_existing_email", user=holder, meta=meta)
    return Registration(email=email, user_id=None)
