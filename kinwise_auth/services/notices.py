"""The emails that tell an owner about their sessions: a new sign-in, a reused
refresh token. Queued in the caller's transaction; the worker decides at
delivery whether they still go out."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from .. import outbox
from ..models import EmailIdentity, OutboxEmail, Session

__all__ = ["queue_new_sign_in", "queue_session_reused"]


def _identity(user: AbstractBaseUser) -> EmailIdentity | None:
    # Already loaded by the sign-in flows; a host's own backend costs a read.
    return getattr(user, "kinwise_identity", None)


def queue_new_sign_in(user: AbstractBaseUser, session: Session) -> None:
    """Queue the "new sign-in" email of ``session``, whose link signs it out."""
    identity = _identity(user)
    if identity is None:
        return
    outbox.queue(
        OutboxEmail.Kind.NEW_SIGN_IN,
        user=user,
        recipient=identity.email,
        context={
            "session": str(session.public_id),
            "device": session.device,
            "ip": session.first_ip,
            "method": session.method,
            "signed_in_at": session.created_at.isoformat(),
        },
    )


def queue_session_reused(session: Session) -> None:
    """Queue the "your session was ended: a token was reused" email."""
    identity = _identity(session.user)
    if identity is None:
        return
    outbox.queue(
        OutboxEmail.Kind.SESSION_REUSED,
        user=session.user,
        recipient=identity.email,
        context={"device": session.device},
    )
