"""Password reset by emailed link, and password change while signed in."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit, outbox
from ..conf import auth_settings
from ..errors import InvalidToken
from ..models import LinkToken, OutboxEmail
from .address_requests import queue_for_address
from .meta import RequestMeta
from .password_policy import check_password_policy
from .reauthentication import require_password
from .secrets import lock_link, require_live, retire_secrets, use_link
from .sessions import renew_session, revoke_refresh_tokens

__all__ = ["request_password_reset", "reset_password", "change_password"]

INVALID_RESET_LINK = _("Invalid or already used password reset link.")
EXPIRED_RESET_LINK = _("This password reset link has expired. Request a new one.")


def request_password_reset(*, email: str, meta: RequestMeta) -> None:
    """Queue a reset link for ``email``: the same work whatever the address; the
    delivery task sends a link only to an active or pending account, never to
    one an admin deactivated."""
    queue_for_address(
        OutboxEmail.Kind.PASSWORD_RESET,
        email=email,
        event="password_reset_requested",
        meta=meta,
    )


@sensitive_variables()
def reset_password(
    *, token: str, new_password: str, meta: RequestMeta
) -> AbstractBaseUser:
    """Set the password of the reset link's user; return the user.

    The link works once, and not after a newer one was sent. It also proves the
    mailbox: a pending account becomes verified and active (and is welcomed); an
    account an admin deactivated stays so and its link is refused. Every refresh
    token of the user is revoked and a notice is emailed. Raises
    :class:`InvalidToken`, :class:`TokenExpired` or :class:`PasswordRejected`
    (the link stays usable then).
    """
    now = timezone.now()
    with transaction.atomic():
        found = lock_link(token, LinkToken.Purpose.PASSWORD_RESET)
        if found is None:
            raise InvalidToken(INVALID_RESET_LINK)
        link, identity = found
        require_live(link, now, invalid=INVALID_RESET_LINK, expired=EXPIRED_RESET_LINK)
        user = link.user
        if identity.is_deactivated:
            raise InvalidToken(INVALID_RESET_LINK)
        check_password_policy(new_password, user=user)
        user.set_password(new_password)
        fields = ["password"]
        if not identity.is_verified:
            identity.verified_at = now
            identity.save(update_fields=["verified_at"])
            user.is_active = True
            fields.append("is_active")
            outbox.queue(OutboxEmail.Kind.WELCOME, user=user, recipient=identity.email)
        user.save(update_fields=fields)
        use_link(link, now)
        retire_secrets(user)
        revoke_refresh_tokens(user, reason="password_reset")
        outbox.queue(
            OutboxEmail.Kind.PASSWORD_CHANGED,
            user=user,
            recipient=identity.email,
            context={"sessions_revoked": True},
        )
        audit.record("password_reset", user=user, meta=meta)
    return user


@sensitive_variables()
def change_password(
    *,
    user: AbstractBaseUser,
    current_password: str,
    new_password: str,
    meta: RequestMeta,
    session_id: Any = None,
) -> dict[str, str]:
    """Change a signed-in user's password; return a fresh token pair.

    Raises :class:`InvalidCredentials` for a wrong current password and
    :class:`PasswordRejected` for a new one the validators refuse. Every other
    session and every refresh token is revoked unless
    ``REVOKE_REFRESH_ON_PASSWORD_CHANGE`` is off; the caller's session
    (``session_id``, the ``sid`` of its access token) goes on with the pair
    returned. With the setting off every session goes on as it was, and the
    pair belongs to a new one.
    """
    require_password(
        user,
        current_password,
        failed_event="password_change_failed",
        meta=meta,
        message=_("The current password is not correct."),
    )
    check_password_policy(new_password, user=user)
    identity = getattr(user, "kinwise_identity", None)
    recipient = (
        identity.email if identity else getattr(user, user.get_email_field_name())
    )
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        retire_secrets(user)
        revoke = bool(auth_settings.REVOKE_REFRESH_ON_PASSWORD_CHANGE)
        if revoke:
            revoke_refresh_tokens(user, reason="password_changed", keep=session_id)
        else:
            session_id = None  # every session goes on: the pair opens a new one
        outbox.queue(
            OutboxEmail.Kind.PASSWORD_CHANGED,
            user=user,
            recipient=recipient,
            context={"sessions_revoked": revoke},
        )
        audit.record("password_changed", user=user, meta=meta)
        return renew_session(user, sid=session_id, method="password", meta=meta)
