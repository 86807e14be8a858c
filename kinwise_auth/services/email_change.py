"""Changing a signed-in user's email address, confirmed from the new address."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit, outbox
from ..errors import EmailTaken, InvalidToken
from ..models import LinkToken, OutboxEmail
from ..normalization import normalize_email
from .identities import find_identity
from .meta import RequestMeta
from .reauthentication import require_proof
from .secrets import (
    lock_link,
    require_live,
    retire_secrets,
    supersede_links,
    use_link,
)

__all__ = ["request_email_change", "confirm_email_change"]

INVALID_CHANGE_LINK = _("Invalid or already used email change link.")
EXPIRED_CHANGE_LINK = _("This email change link has expired. Request a new one.")


@sensitive_variables()
def request_email_change(
    *,
    user: AbstractBaseUser,
    new_email: str,
    password: str | None,
    meta: RequestMeta,
    session_id: Any = None,
) -> None:
    """Email a confirmation link to ``new_email``; nothing changes until it is used.

    Raises :class:`InvalidCredentials` for a wrong password. When another verified
    account holds the address, that account is told ("account exists") instead,
    and the answer is the same: the caller cannot learn whether the address is
    taken. A pending account holds it for nobody: the link goes out, and using it
    deletes that pending account (the mailbox has proved whose it is).
    Either way the caller's earlier email-change links die now, so neither can
    their fate tell (security rule 11).
    """
    require_proof(
        user,
        session_id=session_id,
        password=password,
        failed_event="email_change_failed",
        meta=meta,
        message=_("The password is not correct."),
    )
    with transaction.atomic():
        supersede_links(user, LinkToken.Purpose.EMAIL_CHANGE)
        holder = find_identity(new_email)
        if holder is not None and holder.user_id != user.pk and not holder.is_pending:
            outbox.queue(
                OutboxEmail.Kind.ACCOUNT_EXISTS,
                user=holder.user,
                recipient=holder.email,
                context={"attempt": "email_change"},
            )
        else:
            outbox.queue(
                OutboxEmail.Kind.EMAIL_CHANGE,
                user=user,
                recipient=new_email,
                context={"new_email": new_email},
            )
        audit.record("email_change_requested", user=user, meta=meta)


@sensitive_variables()
def confirm_email_change(*, token: str, meta: RequestMeta) -> AbstractBaseUser:
    """Move the link's user to the address the link was sent to; return the user.

    Uniqueness is checked again, under the identity table's unique constraint:
    an address a verified account took since the request raises
    :class:`EmailTaken` and changes nothing; a pending account holding it is
    deleted. The old address is told. Raises :class:`InvalidToken` for an
    unknown, used or superseded link or a deactivated account, and
    :class:`TokenExpired` past the link's lifetime.
    """
    now = timezone.now()
    with transaction.atomic():
        found = lock_link(token, LinkToken.Purpose.EMAIL_CHANGE)
        if found is None:
            raise InvalidToken(INVALID_CHANGE_LINK)
        link, identity = found
        require_live(
            link, now, invalid=INVALID_CHANGE_LINK, expired=EXPIRED_CHANGE_LINK
        )
        user = link.user
        if not user.is_active or not link.email:
            raise InvalidToken(INVALID_CHANGE_LINK)
        old_email, new_email = identity.email, link.email
        squatter = find_identity(new_email, lock_user=True)
        if squatter is not None and squatter.user_id != user.pk and squatter.is_pending:
            # A pending registration of the address belongs to nobody; the link
            # just proved the mailbox is this user's.
            squatter.user.delete()
        try:
            with transaction.atomic():
                identity.email = new_email
                identity.email_normalized = normalize_email(new_email)
                identity.verified_at = now
                identity.save(
                    update_fields=["email", "email_normalized", "verified_at"]
                )
                _set_user_email(user, old_email, new_email)
        except IntegrityError:
            raise EmailTaken() from None
        use_link(link, now)
        retire_secrets(user)
        outbox.queue(
            OutboxEmail.Kind.EMAIL_CHANGED,
            user=user,
            recipient=old_email,
            context={"new_email": new_email},
        )
        audit.record(
            "email_changed",
            user=user,
            meta=meta,
            extra={"old_email": old_email, "new_email": new_email},
        )
    return user


def _set_user_email(user: AbstractBaseUser, old_email: str, new_email: str) -> None:
    """Copy the address to the user model; a username derived from the old
    address follows it (``auth.User``), when it fits and is free."""
    user_model = get_user_model()
    email_field = user_model.get_email_field_name()
    setattr(user, email_field, new_email)
    fields = [email_field]
    username_field = user_model.USERNAME_FIELD
    if username_field != email_field and getattr(user, username_field) == old_email:
        max_length = getattr(
            user_model._meta.get_field(username_field), "max_length", 150
        )
        taken = user_model._default_manager.filter(
            **{username_field: new_email}
        ).exclude(pk=user.pk)
        if len(new_email) <= (max_length or 150) and not taken.exists():
            setattr(user, username_field, new_email)
            fields.append(username_field)
    user.save(update_fields=fields)
