"""Deleting an account."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit, outbox
from ..conf import auth_settings
from ..models import (
    Authenticator,
    EmailIdentity,
    OutboxEmail,
    Passkey,
    PasskeyChallenge,
    RecoveryCode,
)
from .identities import lock_user
from .meta import RequestMeta
from .reauthentication import require_proof
from .secrets import retire_secrets
from .sessions import revoke_refresh_tokens

__all__ = ["delete_account"]


@sensitive_variables()
def delete_account(
    *,
    user: AbstractBaseUser,
    password: str | None,
    meta: RequestMeta,
    session_id: Any = None,
) -> None:
    """Delete ``user`` (or deactivate and scrub it, ``ACCOUNT_DELETION``).

    Raises :class:`InvalidCredentials` for a wrong password. Refresh tokens are
    revoked, a goodbye email goes to the address, and the audit trail stays with
    its user reference cleared. Scrubbing frees the address for a new account and
    supersedes every code and link mailed before, so none of them outlives it.
    """
    require_proof(
        user,
        session_id=session_id,
        password=password,
        failed_event="account_delete_failed",
        meta=meta,
        message=_("The password is not correct."),
    )
    with transaction.atomic():
        # The user row first, as refresh and password changes lock it: a refresh
        # racing the deletion waits, then finds its user gone.
        lock_user(user.pk)
        identity = EmailIdentity.objects.filter(user_id=user.pk).first()
        email_field = get_user_model().get_email_field_name()
        address = identity.email if identity else getattr(user, email_field)
        revoke_refresh_tokens(user, reason="account_deleted")
        audit.record(
            "account_deleted",
            user=user,
            meta=meta,
            extra={"mode": auth_settings.ACCOUNT_DELETION},
        )
        if address:
            # No user on the row: it must outlive the user it says goodbye to.
            outbox.queue(OutboxEmail.Kind.GOODBYE, recipient=address)
        if auth_settings.ACCOUNT_DELETION == "deactivate":
            _scrub(user)
        else:
            user.delete()


def _scrub(user: AbstractBaseUser) -> None:
    user_model = get_user_model()
    retire_secrets(user)
    EmailIdentity.objects.filter(user_id=user.pk).delete()
    # Its second factors go too: nothing of the person stays on the row.
    Authenticator.objects.filter(user_id=user.pk).delete()
    RecoveryCode.objects.filter(user_id=user.pk).delete()
    Passkey.objects.filter(user_id=user.pk).delete()
    PasskeyChallenge.objects.filter(user_id=user.pk).delete()
    placeholder = f"deleted-{user.pk}@invalid"
    setattr(user, user_model.get_email_field_name(), placeholder)
    if user_model.get_email_field_name() != user_model.USERNAME_FIELD:
        setattr(user, user_model.USERNAME_FIELD, f"deleted-{user.pk}")
    for name in ("first_name", "last_name"):
        if hasattr(user, name):
            setattr(user, name, "")
    user.is_active = False
    user.set_unusable_password()
    user.save()
