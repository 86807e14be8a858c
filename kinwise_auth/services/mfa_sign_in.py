"""Sign-in with a second factor: the first factor right, then a code.

Every sign-in flow ends in :func:`sign_in_or_challenge`: an account with an
enabled factor (an authenticator app or a passkey) gets no tokens but an
``mfa_token`` (a keyed hash at rest, single
use, ``MFA_CHALLENGE_LIFETIME``, dead after ``MFA_MAX_ATTEMPTS`` wrong codes);
:func:`complete` takes it with a TOTP or a recovery code, and
:func:`complete_with_passkey` with a passkey, and opens the session, its method
naming both factors ("password+totp").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit, crypto, outbox
from ..conf import auth_settings
from ..errors import FactorNotFound, InvalidCode, InvalidCredentials, InvalidToken
from ..models import (
    EmailIdentity,
    MfaChallenge,
    OutboxEmail,
    PasskeyChallenge,
)
from . import sign_in_failures
from .factors import passkeys, recovery_codes, second_factors, totp
from .identities import lock_user
from .meta import RequestMeta
from .passkey_ceremonies import Refused, open_ceremony, prove, spend_challenge
from .sessions import SignIn, sign_in

__all__ = [
    "MfaRequired",
    "sign_in_or_challenge",
    "challenge_owner",
    "complete",
    "passkey_options",
    "complete_with_passkey",
]

INVALID_MFA_TOKEN = _("This sign-in has expired. Sign in again.")
WRONG_CODE = _("The code is not correct.")
WRONG_PASSKEY = _("The passkey could not be checked. Try again.")


@dataclass(frozen=True)
class MfaRequired:
    """A sign-in waiting for its second factor: no tokens yet."""

    user: AbstractBaseUser
    mfa_token: str
    methods: tuple[str, ...]


@sensitive_variables()
def sign_in_or_challenge(
    user: AbstractBaseUser, *, method: str, meta: RequestMeta
) -> SignIn | MfaRequired:
    """Tokens for an account with no second factor (:func:`sign_in`); else an
    ``mfa_token`` for :func:`complete`, every earlier one of the user dead."""
    factors = second_factors(user)
    if not factors:
        return sign_in(user, method=method, meta=meta)
    token = crypto.new_link_token()
    now = timezone.now()
    with transaction.atomic():
        # The identity's lock serialises sign-ins of one account: of two at
        # once, the later retires the earlier's token, so one token lives.
        EmailIdentity.objects.select_for_update().filter(user_id=user.pk).first()
        MfaChallenge.objects.filter(user_id=user.pk).supersede()
        _new_challenge(user, token, method, now)
    audit.record("mfa_required", user=user, meta=meta, extra={"method": method})
    methods: list[str] = [f for f in ("totp", "passkey") if f in factors]
    if recovery_codes.left(user):
        methods.append("recovery_code")
    return MfaRequired(user=user, mfa_token=token, methods=tuple(methods))


def _new_challenge(user: AbstractBaseUser, token: str, method: str, now: Any) -> None:
    MfaChallenge.objects.create(
        user_id=user.pk,
        token_hash=crypto.keyed_hash(token),
        method=method,
        expires_at=now + auth_settings.MFA_CHALLENGE_LIFETIME,
    )


@sensitive_variables()
def challenge_owner(mfa_token: str) -> Any:
    """The primary key of the user an ``mfa_token`` was made for (live or not);
    None if none was: it keys the per-account limit of ``mfa/authenticate/``."""
    return (
        MfaChallenge.objects.filter(token_hash__in=crypto.candidate_hashes(mfa_token))
        .values_list("user_id", flat=True)
        .first()
    )


@sensitive_variables()
def complete(
    *, mfa_token: str, code: str, meta: RequestMeta, owner: Any = None
) -> SignIn:
    """Finish a sign-in with a TOTP code (of a step not used before) or a
    recovery code; open its session.

    Raises :class:`InvalidToken` for an unknown, used, superseded, expired or
    exhausted ``mfa_token`` (or an account that may no longer sign in), and
    :class:`InvalidCode` for any wrong code, which counts towards the token's
    attempts and the account's day of failed code checks
    (``LOGIN_CODE_DAILY_FAILURES``, shared with emailed codes: past it every code
    is refused that day) and "someone is trying to sign in" notice. ``owner``
    is :func:`challenge_owner`'s answer when the caller has it already.
    """

    def check(user: AbstractBaseUser, challenge: MfaChallenge, now: Any) -> str | None:
        return _second_factor(user, code, now)

    return _finish(mfa_token, check, guessable=True, meta=meta, owner=owner)


@sensitive_variables()
def passkey_options(*, mfa_token: str) -> dict[str, Any]:
    """The request options for a passkey as the second step of the sign-in
    ``mfa_token`` names. Raises :class:`InvalidToken` for a dead token and
    :class:`FactorNotFound` for an account with no passkey."""
    challenge = (
        MfaChallenge.objects.select_related("user")
        .filter(token_hash__in=crypto.candidate_hashes(mfa_token))
        .first()
    )
    if challenge is None or not _is_live(challenge, timezone.now()):
        raise InvalidToken(INVALID_MFA_TOKEN)
    allowed = passkeys.credential_ids(challenge.user_id)
    if not allowed:
        raise FactorNotFound()
    _row, nonce = open_ceremony(
        PasskeyChallenge.Purpose.SECOND_FACTOR,
        user=challenge.user,
        mfa_challenge=challenge,
    )
    return passkeys.request_options(
        challenge=nonce, allow=allowed, require_verification=False
    )


@sensitive_variables()
def complete_with_passkey(
    *, mfa_token: str, credential: Any, meta: RequestMeta, owner: Any = None
) -> SignIn:
    """Finish a sign-in with one of the account's passkeys, answering the
    options :func:`passkey_options` gave for this ``mfa_token``.

    Raises :class:`InvalidToken` as :func:`complete` does and
    :class:`InvalidCredentials` for any refused answer, which counts towards
    the token's attempts (not the day's code checks: nothing is guessed).
    """

    def check(user: AbstractBaseUser, challenge: MfaChallenge, now: Any) -> str | None:
        try:
            nonce = spend_challenge(
                credential,
                PasskeyChallenge.Purpose.SECOND_FACTOR,
                user_pk=user.pk,
                mfa_challenge_id=challenge.pk,
            )
            prove(
                credential,
                challenge=nonce,
                user=user,
                require_verification=False,
                meta=meta,
            )
        except Refused:
            return None
        return "passkey"

    return _finish(mfa_token, check, guessable=False, meta=meta, owner=owner)


def _is_live(challenge: MfaChallenge, now: Any) -> bool:
    return (
        challenge.used_at is None
        and challenge.superseded_at is None
        and challenge.expires_at > now
        and challenge.attempts < auth_settings.MFA_MAX_ATTEMPTS
        and challenge.user.is_active
    )


@sensitive_variables()
def _finish(
    mfa_token: str,
    check: Callable[[AbstractBaseUser, MfaChallenge, Any], str | None],
    *,
    guessable: bool,
    meta: RequestMeta,
    owner: Any = None,
) -> SignIn:
    """Open the session of the sign-in ``mfa_token`` names if ``check`` says
    which second factor proved it. The rows are locked in the one order: user,
    identity, then the challenge. A failure is counted and committed before it
    is raised; a ``guessable`` factor's also as a failed code check."""
    now = timezone.now()
    if owner is None:
        owner = challenge_owner(mfa_token)
    if owner is None:
        raise InvalidToken(INVALID_MFA_TOKEN)
    with transaction.atomic():
        lock_user(owner)
        identity = (
            EmailIdentity.objects.select_for_update().filter(user_id=owner).first()
        )
        challenge = (
            MfaChallenge.objects.select_for_update()
            .select_related("user")
            .filter(token_hash__in=crypto.candidate_hashes(mfa_token))
            .first()
        )
        if challenge is None or identity is None or not _is_live(challenge, now):
            raise InvalidToken(INVALID_MFA_TOKEN)
        user = challenge.user
        identity.user = user
        factor = None
        if not (guessable and sign_in_failures.codes_exhausted(identity, now)):
            factor = check(user, challenge, now)
        if factor is None:
            MfaChallenge.objects.filter(pk=challenge.pk).update(
                attempts=F("attempts") + 1
            )
            if guessable:
                sign_in_failures.record_failure(identity, method="code", now=now)
        else:
            challenge.used_at = now
            challenge.save(update_fields=["used_at"])
            if factor == "recovery_code":
                _tell_recovery_code_used(user, meta)
            result = sign_in(user, method=f"{challenge.method}+{factor}", meta=meta)
    if factor is None:
        # Recorded, and the attempt counted, before the error: it is committed.
        reason = "invalid_code" if guessable else "invalid_credentials"
        audit.record(
            "login_failed",
            user=user,
            meta=meta,
            extra={"method": f"{challenge.method}+mfa", "reason": reason},
        )
        if guessable:
            raise InvalidCode(WRONG_CODE)
        raise InvalidCredentials(WRONG_PASSKEY)
    return result


@sensitive_variables()
def _second_factor(user: AbstractBaseUser, code: str, now: Any) -> str | None:
    """Which factor ``code`` proves ("totp" or "recovery_code"), spending it;
    None if neither."""
    if totp.accept(user, code, now):
        return "totp"
    if recovery_codes.use(user, code):
        return "recovery_code"
    return None


def _tell_recovery_code_used(user: AbstractBaseUser, meta: RequestMeta) -> None:
    audit.record(
        "recovery_code_used",
        user=user,
        meta=meta,
        extra={"left": recovery_codes.left(user)},
    )
    identity = EmailIdentity.objects.filter(user_id=user.pk).first()
    if identity is not None:
        outbox.queue(
            OutboxEmail.Kind.MFA_CHANGED,
            user=user,
            recipient=identity.email,
            context={"change": "recovery_code_used"},
        )
