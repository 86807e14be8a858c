"""Emailed link tokens: minted at delivery, checked and used by the flow that
takes the link, superseded by the next of the same purpose."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ... import crypto
from ...conf import auth_settings
from ...errors import InvalidToken, TokenExpired
from ...models import EmailIdentity, LinkToken, OutboxEmail, Session

__all__ = [
    "lifetime",
    "mint_link",
    "link_owner",
    "lock_link",
    "require_live",
    "use_link",
    "supersede_links",
]

_LIFETIME_SETTINGS: dict[str, str] = {
    LinkToken.Purpose.VERIFY_EMAIL: "EMAIL_VERIFICATION_LIFETIME",
    LinkToken.Purpose.PASSWORD_RESET: "PASSWORD_RESET_LIFETIME",
    LinkToken.Purpose.EMAIL_CHANGE: "EMAIL_CHANGE_LIFETIME",
    LinkToken.Purpose.SESSION_REVOKE: "SESSION_REVOKE_LIFETIME",
}


def lifetime(purpose: str) -> timedelta:
    """How long a ``purpose`` link lives (its setting, read now)."""
    value: timedelta = getattr(auth_settings, _LIFETIME_SETTINGS[purpose])
    return value


@sensitive_variables()
def mint_link(
    *,
    user: AbstractBaseUser,
    purpose: str,
    email: str = "",
    outbox: OutboxEmail | None = None,
    valid_for: timedelta | None = None,
    session: Session | None = None,
) -> str:
    """Mint a ``purpose`` link token for ``user``; return it, the only clear copy.

    Every live token of that purpose dies first (of that ``session`` only, for a
    link that signs a session out), so the newest link is the one that works.
    Only the keyed hash is stored, with ``outbox`` (the email that carries it),
    ``email`` (the address an email-change link proves) and ``session``.
    ``valid_for`` defaults to the purpose's lifetime setting.
    """
    token = crypto.new_link_token()
    now = timezone.now()
    with transaction.atomic():
        # Locking the identity serialises minting per user, so two emails
        # delivered at once cannot both leave a live token behind.
        EmailIdentity.objects.select_for_update().filter(user_id=user.pk).first()
        supersede_links(user, purpose, session=session)
        LinkToken.objects.create(
            user_id=user.pk,
            purpose=purpose,
            token_hash=crypto.keyed_hash(token),
            email=email,
            outbox=outbox,
            session_id=None if session is None else session.public_id,
            expires_at=now + (lifetime(purpose) if valid_for is None else valid_for),
        )
    return token


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
    identity = EmailIdentity.objects.select_for_update().filter(user_id=user.pk).first()
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


def use_link(link: LinkToken, now: datetime) -> None:
    """Mark ``link`` used: it works once."""
    link.used_at = now
    link.save(update_fields=["used_at"])


def supersede_links(
    user: AbstractBaseUser | None,
    purpose: str | None = None,
    *,
    session: Session | None = None,
) -> int:
    """Retire ``user``'s live links (of ``purpose`` and ``session`` only, when
    given); for no user, the same statement, matching nothing (equal work on
    every path).

    With no ``purpose``, links that sign a session out survive: a password
    changed or an address moved by whoever holds a session must not take from
    the owner the link that ends it.
    """
    # No user: the same UPDATE, matching nothing. django-stubs type the key as
    # auth.User; any user model works.
    links = LinkToken.objects.filter(user=cast(Any, user))
    if purpose is None:
        links = links.exclude(purpose=LinkToken.Purpose.SESSION_REVOKE)
    else:
        links = links.filter(purpose=purpose)
    if session is not None:
        links = links.filter(session_id=session.public_id)
    return links.supersede()
