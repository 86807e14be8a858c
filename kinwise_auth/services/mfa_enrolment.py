"""Enrolling second factors: an authenticator app (TOTP) and recovery codes.

Every change needs a proof made for it (the ``password`` field or a recent
reauthentication, :func:`~.reauthentication.require_proof`), emails the owner
and is audited. A set-up offers a secret for ten minutes; a code from the app
confirms it, and the account's first factor comes with its recovery codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit, outbox
from ..errors import FactorNotFound, InvalidCode, MfaRequiredFirst, MfaSetupRequired
from ..models import (
    Authenticator,
    EmailIdentity,
    MfaChallenge,
    OutboxEmail,
    Passkey,
    PasskeyChallenge,
)
from ..site import site_name
from .factors import recovery_codes, second_factors, totp
from .identities import lock_user
from .meta import RequestMeta
from .reauthentication import require_proof
from .sessions import revoke_refresh_tokens

__all__ = [
    "SETUP_LIFETIME",
    "TotpSetup",
    "FactorsStatus",
    "setup_totp",
    "confirm_totp",
    "disable_totp",
    "renew_recovery_codes",
    "factors_status",
    "enabled_totp",
    "reset_factors",
    "changed",
    "WRONG_PASSWORD",
]

#: How long a set-up's secret waits for its confirming code.
SETUP_LIFETIME = timedelta(minutes=10)
WRONG_PASSWORD = _("The password is not correct.")
WRONG_CODE = _("The code is not correct. Check the time on your device.")


@dataclass(frozen=True)
class TotpSetup:
    secret: str
    otpauth_url: str
    qr_svg: str
    expires_in: int


@dataclass(frozen=True)
class FactorsStatus:
    totp: Authenticator | None
    recovery_codes_left: int
    passkeys: int


def enabled_totp(user: AbstractBaseUser) -> Authenticator | None:
    """``user``'s enabled authenticator app, if any."""
    return totp.enabled_authenticator(user)


def factors_status(user: AbstractBaseUser) -> FactorsStatus:
    """What ``user`` has enabled (``GET mfa/``)."""
    return FactorsStatus(
        totp=enabled_totp(user),
        recovery_codes_left=recovery_codes.left(user),
        passkeys=Passkey.objects.filter(user_id=user.pk).count(),
    )


@sensitive_variables()
def setup_totp(
    *, user: AbstractBaseUser, session_id: Any, password: str | None, meta: RequestMeta
) -> TotpSetup:
    """Offer a new TOTP secret; it replaces an enabled one only once confirmed."""
    require_proof(
        user,
        session_id=session_id,
        password=password,
        failed_event="mfa_change_failed",
        meta=meta,
        message=WRONG_PASSWORD,
    )
    secret = totp.new_secret()
    authenticator, _ = Authenticator.objects.get_or_create(
        user_id=user.pk, kind=Authenticator.Kind.TOTP
    )
    authenticator.pending_secret = totp.sealed(secret, user.pk)
    authenticator.pending_until = timezone.now() + SETUP_LIFETIME
    authenticator.save(update_fields=["pending_secret", "pending_until"])
    uri = totp.provisioning_uri(secret, account=_address(user), issuer=site_name())
    return TotpSetup(
        secret=secret,
        otpauth_url=uri,
        qr_svg=totp.qr_svg(uri),
        expires_in=int(SETUP_LIFETIME.total_seconds()),
    )


@sensitive_variables()
def confirm_totp(
    *, user: AbstractBaseUser, code: str, meta: RequestMeta
) -> list[str] | None:
    """Enable the secret the set-up offered, proven by a ``code`` of it; the
    account's first recovery codes when it had none left, else None.

    Raises :class:`MfaSetupRequired` with no set-up under way and
    :class:`InvalidCode` for a wrong code (the set-up stays open).
    """
    now = timezone.now()
    with transaction.atomic():
        # The user first, as every change of an account's factors: whether it
        # has codes and which factors are left is read under one lock.
        lock_user(user.pk)
        authenticator = (
            Authenticator.objects.select_for_update()
            .filter(user_id=user.pk, kind=Authenticator.Kind.TOTP)
            .first()
        )
        if (
            authenticator is None
            or not authenticator.pending_secret
            or authenticator.pending_until is None
            or authenticator.pending_until <= now
        ):
            raise MfaSetupRequired()
        step = totp.matching_step(
            totp.opened(authenticator, "pending_secret"), code, now
        )
        if step is not None:
            return _enable(user, authenticator, step, now, meta)
    # Outside the transaction: the record of a wrong code stays.
    audit.record(
        "mfa_change_failed",
        user=user,
        meta=meta,
        extra={"reason": "invalid_code", "factor": "totp"},
    )
    raise InvalidCode(WRONG_CODE)


def _enable(
    user: AbstractBaseUser,
    authenticator: Authenticator,
    step: int,
    now: Any,
    meta: RequestMeta,
) -> list[str] | None:
    """Make the pending secret the enabled one (inside the caller's lock)."""
    authenticator.secret = authenticator.pending_secret
    authenticator.pending_secret = ""
    authenticator.pending_until = None
    authenticator.confirmed_at = now
    authenticator.last_step = step
    authenticator.save()
    codes = None if recovery_codes.left(user) else recovery_codes.issue(user)
    changed(user, "totp_enabled", meta)
    return codes


@sensitive_variables()
def disable_totp(
    *, user: AbstractBaseUser, session_id: Any, password: str | None, meta: RequestMeta
) -> None:
    """Remove the authenticator app, and with it the recovery codes when no
    passkey is left (they stand in for a factor that is gone). Raises
    :class:`FactorNotFound` without one."""
    require_proof(
        user,
        session_id=session_id,
        password=password,
        failed_event="mfa_change_failed",
        meta=meta,
        message=WRONG_PASSWORD,
    )
    with transaction.atomic():
        lock_user(user.pk)  # one change of an account's factors at a time
        deleted, _ = Authenticator.objects.filter(
            user_id=user.pk, kind=Authenticator.Kind.TOTP, confirmed_at__isnull=False
        ).delete()
        if not deleted:
            raise FactorNotFound()
        if not second_factors(user):
            recovery_codes.retire(user)
        changed(user, "totp_disabled", meta)


@sensitive_variables()
def renew_recovery_codes(
    *, user: AbstractBaseUser, session_id: Any, password: str | None, meta: RequestMeta
) -> list[str]:
    """A new set of recovery codes (the old set dies). Raises
    :class:`MfaRequiredFirst` for an account with no second factor."""
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
        if not second_factors(user):
            raise MfaRequiredFirst()
        codes = recovery_codes.issue(user)
        changed(user, "recovery_codes_renewed", meta)
    return codes


def _address(user: AbstractBaseUser) -> str:
    identity = EmailIdentity.objects.filter(user_id=user.pk).first()
    return identity.email if identity is not None else str(user.get_username())


def changed(user: AbstractBaseUser, change: str, meta: RequestMeta | None) -> None:
    """Audit ``change`` and tell the owner."""
    audit.record("mfa_changed", user=user, meta=meta, extra={"change": change})
    identity = EmailIdentity.objects.filter(user_id=user.pk).first()
    if identity is not None:
        outbox.queue(
            OutboxEmail.Kind.MFA_CHANGED,
            user=user,
            recipient=identity.email,
            context={"change": change},
        )


def reset_factors(user: AbstractBaseUser, *, meta: RequestMeta | None = None) -> bool:
    """An operator's reset of ``user``'s second factors (a lost phone and no
    recovery code left): the app, the passkeys, the recovery codes, any sign-in
    waiting for its second step, any passkey ceremony and every session go;
    the owner is told and it is audited. Whether there was anything to
    reset."""
    with transaction.atomic():
        lock_user(user.pk)
        removed, _ = Authenticator.objects.filter(user_id=user.pk).delete()
        removed += Passkey.objects.filter(user_id=user.pk).delete()[0]
        retired = recovery_codes.retire(user)
        MfaChallenge.objects.filter(user_id=user.pk).supersede()
        PasskeyChallenge.objects.filter(user_id=user.pk).delete()
        if not removed and not retired:
            return False
        # The lost device may hold a session (one a passkey on it opened, or
        # one it stepped up): it ends, with every other, before it can enrol
        # a factor of its own. The owner signs in again with the password.
        revoke_refresh_tokens(user, reason="factors_reset")
        changed(user, "factors_reset", meta)
    return True
