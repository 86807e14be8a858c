"""Recovery codes: ten single-use codes, shown once, stored as keyed hashes
bound to their user; a new set retires the old."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ... import crypto
from ...models import RecoveryCode

__all__ = ["COUNT", "issue", "use", "left", "retire"]

#: Codes in a set.
COUNT = 10


def _message(user_pk: Any, key: str) -> str:
    return f"recovery_code:{user_pk}:{key}"


@sensitive_variables()
def issue(user: AbstractBaseUser) -> list[str]:
    """A new set of codes for ``user`` (the old set dies); the only clear copy."""
    retire(user)
    codes = [crypto.new_recovery_code() for _ in range(COUNT)]
    RecoveryCode.objects.bulk_create(
        RecoveryCode(
            user_id=user.pk,
            code_hash=crypto.keyed_hash(
                _message(user.pk, crypto.recovery_code_key(code) or "")
            ),
        )
        for code in codes
    )
    return codes


@sensitive_variables()
def use(user: AbstractBaseUser, code: str) -> bool:
    """Spend ``user``'s live code ``code``; whether there was one.

    One conditional UPDATE: of two uses of one code at once, one wins.
    """
    key = crypto.recovery_code_key(code)
    if key is None:
        return False
    hashes = crypto.candidate_hashes(_message(user.pk, key))
    return bool(
        RecoveryCode.objects.filter(
            user_id=user.pk,
            code_hash__in=hashes,
            used_at=None,
            superseded_at=None,
        ).update(used_at=timezone.now())
    )


def left(user: AbstractBaseUser) -> int:
    """How many of ``user``'s codes are still unused."""
    return RecoveryCode.objects.filter(
        user_id=user.pk, used_at=None, superseded_at=None
    ).count()


def retire(user: AbstractBaseUser) -> int:
    """Kill ``user``'s unused codes (a new set, or the factors reset)."""
    return RecoveryCode.objects.filter(
        user_id=user.pk, used_at=None, superseded_at=None
    ).update(superseded_at=timezone.now())
