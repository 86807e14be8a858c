"""A signed-in user's passkeys: add one, list, rename and remove them.

Adding one starts with a proof made for it (``password`` or a recent
reauthentication) and ends with the browser's answer to a challenge bound to
the user; the account's first second factor comes with its recovery codes.
Every change is audited and emailed, as for the authenticator app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit
from ..errors import FactorNotFound, InvalidCredentials
from ..models import EmailIdentity, Passkey, PasskeyChallenge, Session
from .factors import passkeys, recovery_codes, second_factors
from .identities import lock_user
from .meta import RequestMeta
from .mfa_enrolment import WRONG_PASSWORD, changed
from .passkey_ceremonies import Refused, open_ceremony, spend_challenge
from .reauthentication import require_proof
from .sessions import revoke_sessions

__all__ = [
    "NewPasskey",
    "registration_options",
    "register_passkey",
    "list_passkeys",
    "rename_passkey",
    "remove_passkey",
]

NOT_REGISTERED = _("The passkey could not be added. Try again.")
NO_SUCH_PASSKEY = _("No such passkey.")
DEFAULT_NAME = _("Passkey")


@dataclass(frozen=True)
class NewPasskey:
    passkey: Passkey
    recovery_codes: list[str] | None


@sensitive_variables()
def registration_options(
    *, user: AbstractBaseUser, session_id: Any, password: str | None, meta: RequestMeta
) -> dict[str, Any]:
    """The creation options for a new passkey of ``user``; needs a proof."""
    require_proof(
        user,
        session_id=session_id,
        password=password,
        failed_event="mfa_change_failed",
        meta=meta,
        message=WRONG_PASSWORD,
    )
    _row, challenge = open_ceremony(PasskeyChallenge.Purpose.REGISTER, user=user)
    identity = EmailIdentity.objects.filter(user_id=user.pk).first()
    name = identity.email if identity is not None else str(user.get_username())
    return passkeys.creation_options(
        challenge=challenge,
        handle=passkeys.user_handle(user),
        user_name=name,
        display_name=name,
        exclude=passkeys.credential_ids(user.pk),
    )


@sensitive_variables()
def register_passkey(
    *, user: AbstractBaseUser, credential: Any, name: str, meta: RequestMeta
) -> NewPasskey:
    """Keep the passkey ``credential`` proves, answering the latest creation
    options of ``user``'s (within ``WEBAUTHN_CHALLENGE_LIFETIME``, once).
    Raises :class:`InvalidCredentials` for any other answer."""
    try:
        challenge = spend_challenge(
            credential, PasskeyChallenge.Purpose.REGISTER, user_pk=user.pk
        )
        created = passkeys.verify_creation(credential, challenge)
    except Refused as refused:
        _refused(user, refused.reason, meta)
    handle = passkeys.user_handle(user)
    try:
        with transaction.atomic():
            lock_user(user.pk)
            first = not recovery_codes.left(user)
            passkey = Passkey.objects.create(
                user_id=user.pk,
                credential_id=created.credential_id,
                public_key=created.public_key,
                sign_count=created.sign_count,
                user_handle=handle,
                transports=created.transports,
                aaguid=created.aaguid,
                backed_up=created.backed_up,
                name=name.strip() or str(DEFAULT_NAME),
            )
            codes = recovery_codes.issue(user) if first else None
            changed(user, "passkey_added", meta)
    except IntegrityError:
        # The credential is registered already (this account's or another's).
        _refused(user, "registered", meta)
    return NewPasskey(passkey=passkey, recovery_codes=codes)


def _refused(user: AbstractBaseUser, reason: str, meta: RequestMeta) -> NoReturn:
    audit.record(
        "mfa_change_failed",
        user=user,
        meta=meta,
        extra={"reason": reason, "factor": "passkey"},
    )
    raise InvalidCredentials(NOT_REGISTERED)


def list_passkeys(*, user: AbstractBaseUser) -> list[Passkey]:
    """``user``'s passkeys, the newest first."""
    return list(Passkey.objects.filter(user_id=user.pk).order_by("-created_at", "-pk"))


@sensitive_variables()
def rename_passkey(
    *,
    user: AbstractBaseUser,
    passkey_id: Any,
    name: str,
    session_id: Any,
    password: str | None,
    meta: RequestMeta,
) -> Passkey:
    """Give ``user``'s passkey ``passkey_id`` a new ``name`` (needs a proof);
    :class:`FactorNotFound` for an id that is not one of theirs."""
    passkey = _own(user, passkey_id)
    require_proof(
        user,
        session_id=session_id,
        password=password,
        failed_event="mfa_change_failed",
        meta=meta,
        message=WRONG_PASSWORD,
    )
    passkey.name = name.strip() or str(DEFAULT_NAME)
    passkey.save(update_fields=["name"])
    audit.record("passkey_renamed", user=user, meta=meta, extra={"passkey": passkey.pk})
    return passkey


@sensitive_variables()
def remove_passkey(
    *,
    user: AbstractBaseUser,
    passkey_id: Any,
    session_id: Any,
    password: str | None,
    meta: RequestMeta,
) -> None:
    """Remove ``user``'s passkey ``passkey_id`` (needs a proof); with the
    account's last second factor go its recovery codes. Every other session
    that signed in with a passkey ends (the removed one may be in a thief's
    hand; which passkey opened a session is not kept): the caller's, which
    just proved itself, stays."""
    passkey = _own(user, passkey_id)
    require_proof(
        user,
        session_id=session_id,
        password=password,
        failed_event="mfa_change_failed",
        meta=meta,
        message=WRONG_PASSWORD,
    )
    with transaction.atomic():
        lock_user(user.pk)
        if not Passkey.objects.filter(pk=passkey.pk).delete()[0]:
            raise FactorNotFound(NO_SUCH_PASSKEY)
        if not second_factors(user):
            recovery_codes.retire(user)
        opened_by_passkey = Session.objects.filter(
            user_id=user.pk, method__contains="passkey"
        ).exclude(public_id=session_id)
        revoke_sessions(
            opened_by_passkey, reason="passkey_removed", user=user, meta=meta
        )
        changed(user, "passkey_removed", meta)


def _own(user: AbstractBaseUser, passkey_id: Any) -> Passkey:
    text = str(passkey_id)
    # An id as GET passkeys/ shows it: ASCII digits only ("+1", " 1" or
    # full-width digits name nothing), and within a bigint (no database error).
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 2**63:
        raise FactorNotFound(NO_SUCH_PASSKEY)
    key = int(text)
    passkey = Passkey.objects.filter(pk=key, user_id=user.pk).first()
    if passkey is None:
        raise FactorNotFound(NO_SUCH_PASSKEY)
    return passkey
