"""Registration: one pending account per address, verified by an emailed link."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables

from .. import audit, outbox
from ..conf import auth_settings
from ..errors import EmailTaken
from ..models import EmailIdentity, LinkToken, OutboxEmail
from .identities import (
    create_pending_user,
    find_identity,
    replace_pending_registration,
    spend_like_a_new_account,
)
from .meta import RequestMeta
from .password_policy import check_password_policy, unsaved_user
from .secrets import supersede_links

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

    Raises :class:`PasswordRejected` (on ``password``), before any other work,
    when ``AUTH_PASSWORD_VALIDATORS`` refuse the password for this address and
    these names.
    An address held by a pending account is registered again: the newest
    password, names and spelling replace the pending ones, every link mailed
    before dies, and a fresh link goes out (a pending account belongs to nobody
    until a mailbox confirms it). An address held by a verified account gets an
    "account exists" notice, and the answer looks the same; with enumeration
    prevention off, that raises :class:`EmailTaken` instead. Every path costs
    the same statements, one password hash and one publish. Twenty racing
    registrations of one address leave one user.
    """
    profile = {"first_name": first_name, "last_name": last_name}
    check_password_policy(
        password, user=unsaved_user(email=email, profile=profile), field="password"
    )
    with transaction.atomic():
        # The holder's user row is locked first (security rule 9's lock order),
        # so a verification racing this request is seen before we decide.
        identity = find_identity(email, lock_user=True)
        if identity is None:
            try:
                user, identity = create_pending_user(
                    email=email, password=password, profile=profile
                )
            except IntegrityError:
                # Lost a race for the address, or a user made outside the package
                # (not yet backfilled) holds it in a unique user-model column.
                identity = find_identity(email, lock_user=True)
            else:
                return _queue_verification(user, identity, created=True, meta=meta)

        # The locked user row is current; the identity beside it may not be: a
        # verification that committed while we waited activated the user.
        if identity is not None and identity.is_pending:
            replace_pending_registration(
                identity, email=email, password=password, profile=profile
            )
            return _queue_verification(
                identity.user, identity, created=False, meta=meta
            )

        if not auth_settings.PREVENT_ENUMERATION:
            raise EmailTaken()
        spend_like_a_new_account(password)
        holder = identity.user if identity is not None else None
        # The statement the other paths spend on retiring links; a verified
        # account's verification links have nothing left to do.
        supersede_links(holder, LinkToken.Purpose.VERIFY_EMAIL)
        # To the stored address, never the look-alike just typed (CVE-2019-19844).
        outbox.queue(
            OutboxEmail.Kind.ACCOUNT_EXISTS,
            user=holder,
            recipient=identity.email if identity is not None else email,
        )
        audit.record("registration_for_existing_email", user=holder, meta=meta)
    return Registration(email=email, user_id=None)


def _queue_verification(
    user: AbstractBaseUser, identity: EmailIdentity, *, created: bool, meta: RequestMeta
) -> Registration:
    """Retire every link of the (new or replaced) pending account; mail a new one."""
    supersede_links(user)
    outbox.queue(OutboxEmail.Kind.VERIFY_EMAIL, user=user, recipient=identity.email)
    audit.record(
        "user_registered" if created else "pending_registration_replaced",
        user=user,
        meta=meta,
    )
    return Registration(email=identity.email, user_id=user.pk)
