"""The rows behind a passkey ceremony: its challenge, then the passkey it proves.

A challenge is random, stored only as a keyed hash bound to its purpose and
user (:func:`~.factors.passkeys.challenge_hashes`), answered once, within
``WEBAUTHN_CHALLENGE_LIFETIME``; a newer one of the same purpose and user (or
sign-in waiting for its second step) supersedes it. It is spent before the
answer is checked, so a refused answer cannot be tried again.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import audit
from ..conf import auth_settings
from ..models import MfaChallenge, Passkey, PasskeyChallenge
from .factors import passkeys
from .factors.passkeys import Refused
from .meta import RequestMeta

__all__ = ["open_ceremony", "spend_challenge", "prove", "Refused"]


def open_ceremony(
    purpose: str,
    *,
    user: AbstractBaseUser | None = None,
    mfa_challenge: MfaChallenge | None = None,
) -> tuple[PasskeyChallenge, bytes]:
    """A new challenge for ``purpose`` (and ``user``), its earlier ones of the
    same purpose and user, or sign-in, superseded; the row and the challenge."""
    challenge = passkeys.new_challenge()
    user_pk = None if user is None else user.pk
    with transaction.atomic():
        if user_pk is not None:
            earlier = PasskeyChallenge.objects.filter(purpose=purpose, user_id=user_pk)
            if mfa_challenge is not None:
                earlier = earlier.filter(mfa_challenge=mfa_challenge)
            earlier.supersede()
        row = PasskeyChallenge.objects.create(
            purpose=purpose,
            user_id=user_pk,
            mfa_challenge=mfa_challenge,
            challenge_hash=passkeys.challenge_hashes(challenge, purpose, user_pk)[0],
            expires_at=timezone.now() + auth_settings.WEBAUTHN_CHALLENGE_LIFETIME,
        )
    return row, challenge


def spend_challenge(
    credential: Any,
    purpose: str,
    *,
    user_pk: Any = None,
    public_id: Any = None,
    mfa_challenge_id: Any = None,
) -> bytes:
    """The challenge ``credential`` answers, if it is a live one of ``purpose``
    (and ``user_pk``, ``public_id``, ``mfa_challenge_id``): used now, in a
    transaction of its own when the caller has none, so it stays used whatever
    the answer proves. Raises :class:`Refused` otherwise."""
    challenge = passkeys.challenge_of(credential)
    if challenge is None:
        raise Refused("no_challenge")
    now = timezone.now()
    found = PasskeyChallenge.objects.select_for_update().filter(
        purpose=purpose,
        challenge_hash__in=passkeys.challenge_hashes(challenge, purpose, user_pk),
    )
    if public_id is not None:
        found = found.filter(public_id=public_id)
    if mfa_challenge_id is not None:
        found = found.filter(mfa_challenge_id=mfa_challenge_id)
    with transaction.atomic():
        row = found.first()
        if (
            row is None
            or row.used_at is not None
            or row.superseded_at is not None
            or row.expires_at <= now
        ):
            raise Refused("challenge")
        row.used_at = now
        row.save(update_fields=["used_at"])
    return challenge


@sensitive_variables()
def prove(
    credential: Any,
    *,
    challenge: bytes,
    user: AbstractBaseUser | None,
    require_verification: bool,
    meta: RequestMeta,
) -> Passkey:
    """The passkey (of ``user``, or anyone's for a passwordless sign-in) whose
    genuine answer to ``challenge`` ``credential`` is; its count and last use
    recorded under its lock. A count that went back is audited
    (``passkey_sign_count_regressed``: a cloned authenticator, perhaps).
    Raises :class:`Refused`."""
    credential_id = passkeys.credential_id_of(credential)
    if credential_id is None:
        raise Refused("no_credential_id")
    regressed = None
    with transaction.atomic():
        # The passkey's row only (``of``): the user is locked, where it is,
        # before it, as every flow locks them; a join's lock would take both.
        found = Passkey.objects.select_for_update(of=("self",)).filter(
            credential_id=credential_id
        )
        if user is not None:
            found = found.filter(user_id=user.pk)
        passkey = found.select_related("user").first()
        if passkey is None:
            raise Refused("unknown_credential")
        try:
            assertion = passkeys.verify_assertion(
                credential,
                challenge=challenge,
                passkey=passkey,
                require_verification=require_verification,
            )
        except Refused as refused:
            if refused.reason != "sign_count":
                raise
            regressed = refused
        else:
            passkey.sign_count = assertion.sign_count
            passkey.backed_up = assertion.backed_up
            passkey.last_used_at = timezone.now()
            passkey.save(update_fields=["sign_count", "backed_up", "last_used_at"])
    if regressed is not None:
        # After the lock's transaction: a refusal rolls nothing of it back.
        audit.record(
            "passkey_sign_count_regressed",
            user=passkey.user,
            meta=meta,
            extra={"passkey": passkey.pk, "stored": passkey.sign_count},
        )
        raise regressed
    return passkey
