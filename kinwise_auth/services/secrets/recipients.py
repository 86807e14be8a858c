"""Who may receive which email, decided when it is delivered, not when asked for.

A request does the same work for every address (security rule 5); these rules
then decide, in the worker, whether the email goes out at all. A secret goes
only to the account's current address: a reset asked for before the user moved
to another address must not reach the old one.
"""

from __future__ import annotations

from typing import Any

from ...models import EmailIdentity, OutboxEmail, Session
from ...normalization import email_key_or_none

__all__ = [
    "current_identity",
    "verification_recipient",
    "login_code_recipient",
    "password_reset_recipient",
    "email_change_recipient",
    "welcome_recipient",
    "new_sign_in_recipient",
]


def current_identity(row: OutboxEmail) -> EmailIdentity | None:
    """The row's user's identity, if the row is still addressed to it."""
    if row.user is None:
        return None
    identity = EmailIdentity.objects.filter(user=row.user).first()
    if identity is None or identity.email_normalized != email_key_or_none(
        row.recipient
    ):
        return None
    identity.user = row.user  # the row's, already loaded
    return identity


def verification_recipient(row: OutboxEmail) -> EmailIdentity | None:
    """A pending account: once the address is proven or gone, nothing to verify."""
    identity = current_identity(row)
    return identity if identity is not None and not identity.is_verified else None


def login_code_recipient(row: OutboxEmail) -> EmailIdentity | None:
    """An account that can sign in: unknown, pending or deactivated get no code."""
    identity = current_identity(row)
    return identity if identity is not None and identity.can_sign_in else None


def password_reset_recipient(row: OutboxEmail) -> EmailIdentity | None:
    """An active or pending account: never one an admin deactivated."""
    identity = current_identity(row)
    return identity if identity is not None and not identity.is_deactivated else None


def email_change_recipient(row: OutboxEmail) -> tuple[Any, str] | None:
    """The active user and the new address the link will prove."""
    new_email = str(row.context.get("new_email", ""))
    if row.user is None or not row.user.is_active or not new_email:
        return None
    return row.user, new_email


def welcome_recipient(row: OutboxEmail) -> Any | None:
    """The user, once active."""
    return row.user if row.user is not None and row.user.is_active else None


def new_sign_in_recipient(row: OutboxEmail) -> tuple[EmailIdentity, Session] | None:
    """An account that can still sign in, at its current address, and the
    session the email is about, if it still exists (live or ended)."""
    identity = current_identity(row)
    if identity is None or not identity.can_sign_in:
        return None
    session = Session.objects.filter(
        public_id=row.context.get("session"), user_id=identity.user_id
    ).first()
    return None if session is None else (identity, session)
