"""Checking emailed link tokens, shared by every flow that consumes one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Subquery
from django.views.decorators.debug import sensitive_variables

from .. import crypto
from ..errors import InvalidToken, TokenExpired
from ..models import EmailIdentity, LinkToken, LoginCode

__all__ = ["link_owner", "lock_link", "require_live", "retire_secrets"]


@sensitive_variables()
def link_owner(token: str, purpose: str) -> Any:
    """The primary key of the user a ``purpose`` link token was minted for; None
    if no such token exists.

    Read without a lock, whether the link is live, used, superseded or expired:
    it keys the per-account rate limit of the endpoint that takes the link,
    before the link is used, so one account's links cannot be replayed without
    bound from many addresses.
    """
    return (
        LinkToken.objects.filter(
            purpose=purpose, token_hash__in=crypto.candidate_hashes(token)
        )
        .values_list("user_id", flat=True)
        .first()
    )


@sensitive_variables()
def lock_link(token: str, purpose: str) -> tuple[LinkToken, EmailIdentity] | None:
    """The token's row and its user's identity, locked; None if unknown.

    Call inside ``transaction.atomic()``: the locks make N simultaneous uses of
    one link succeed once. They are taken in the one order every flow uses —
    user (as :func:`~kinwise_auth.services.identities.lock_user`), identity, link —
    and each row is read after its lock, so a request that waited reads what the
    winner left. The token is found by its keyed hash under the current and the
    fallback secret keys.
    """
    hashes = crypto.candidate_hashes(token)
    # The link's user, found and locked in one statement.
    owner = LinkToken.objects.filter(purpose=purpose, token_hash__in=hashes).values(
        "user_id"
    )[:1]
    user = (
        get_user_model()
        ._default_manager.select_for_update(no_key=True)
        .filter(pk=Subquery(owner))
        .first()
    )
    if user is None:
        return None
    identity = EmailIdentity.objects.select_for_update().filter(user=user).first()
    link = (
        LinkToken.objects.select_for_update()
        .filter(purpose=purpose, token_hash__in=hashes)
        .first()
    )
    if identity is None or link is None:
        return None
    link.user = user
    identity.user = user
    return link, identity


def require_live(
    link: LinkToken, now: datetime, invalid: Any = None, expired: Any = None
) -> None:
    """Raise :class:`InvalidToken` for a used or superseded link and
    :class:`TokenExpired` for a live one past its expiry (with these messages)."""
    if link.used_at is not None or link.superseded_at is not None:
        raise InvalidToken(invalid)
    if link.expires_at <= now:
        raise TokenExpired(expired)


def retire_secrets(user: Any) -> None:
    """Supersede every live link and login code of ``user``.

    After a password reset or change, or a move to another address, nothing
    mailed before may still act on the account: not a reset link sent to an
    address the user left, nor an email change an intruder started.
    """
    LinkToken.objects.filter(user=user).supersede()
    LoginCode.objects.filter(user=user).supersede()
