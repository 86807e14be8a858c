"""Emailed one-time sign-in codes: minted at delivery, bound to their user, used
once, dead after ``LOGIN_CODE_MAX_ATTEMPTS`` wrong guesses or a newer code."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ... import crypto
from ...conf import auth_settings
from ...models import EmailIdentity, LoginCode, OutboxEmail

__all__ = ["CodeCheck", "mint_login_code", "use_login_code", "supersede_login_codes"]


class CodeCheck(enum.Enum):
    """What :func:`use_login_code` made of a code."""

    USED = "used"  # the live code: now used, sign the user in
    EXPIRED = "expired"  # the live code, too late
    WRONG = "wrong"  # anything else; a guess at a live code was counted


@sensitive_variables()
def mint_login_code(
    *,
    user: AbstractBaseUser,
    outbox: OutboxEmail | None = None,
    ip: str | None = None,
    valid_for: timedelta | None = None,
    purpose: str = LoginCode.Purpose.SIGN_IN,
) -> str:
    """Mint a ``purpose`` code for ``user``; return it, the only clear copy.

    Every live code of that purpose of the user dies first: one code works at
    a time, the newest. The stored hash binds the code to the user and the
    purpose, so a code's hash is no use for another account or purpose.
    ``valid_for`` defaults to ``LOGIN_CODE_LIFETIME``.
    """
    code = crypto.new_login_code(int(auth_settings.LOGIN_CODE_LENGTH))
    now = timezone.now()
    if valid_for is None:
        valid_for = auth_settings.LOGIN_CODE_LIFETIME
    with transaction.atomic():
        # Serialise minting per user: one live code at a time, the newest.
        EmailIdentity.objects.select_for_update().filter(user_id=user.pk).first()
        supersede_login_codes(user, purpose)
        LoginCode.objects.create(
            user_id=user.pk,
            purpose=purpose,
            code_hash=crypto.keyed_hash(
                crypto.login_code_message(user.pk, code, purpose)
            ),
            outbox=outbox,
            ip=ip,
            expires_at=now + valid_for,
        )
    return code


@sensitive_variables()
def use_login_code(
    *,
    user: AbstractBaseUser,
    code: str,
    now: datetime,
    purpose: str = LoginCode.Purpose.SIGN_IN,
) -> CodeCheck:
    """Use ``user``'s live ``purpose`` code if ``code`` is it.

    Call inside ``transaction.atomic()`` with the user's rows locked (the code's
    row is locked here, last): N simultaneous uses succeed once. A wrong guess
    is counted against the live code, which dies at ``LOGIN_CODE_MAX_ATTEMPTS``.
    """
    live = (
        LoginCode.objects.select_for_update()
        .filter(user_id=user.pk, purpose=purpose)
        .live()
        .order_by("-created_at")
        .first()
    )
    if live is None or live.attempts >= auth_settings.LOGIN_CODE_MAX_ATTEMPTS:
        return CodeCheck.WRONG
    if not crypto.matches(
        crypto.login_code_message(live.user_id, code, purpose), live.code_hash
    ):
        live.attempts += 1
        live.save(update_fields=["attempts"])
        return CodeCheck.WRONG
    if live.expires_at <= now:
        return CodeCheck.EXPIRED
    live.used_at = now
    live.save(update_fields=["used_at"])
    return CodeCheck.USED


def supersede_login_codes(user: AbstractBaseUser, purpose: str | None = None) -> int:
    """Retire ``user``'s live codes (of ``purpose`` only, when given)."""
    codes = LoginCode.objects.filter(user_id=user.pk)
    if purpose is not None:
        codes = codes.filter(purpose=purpose)
    return int(codes.supersede())
