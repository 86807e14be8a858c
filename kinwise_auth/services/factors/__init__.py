"""Second factors: a TOTP app (:mod:`.totp`), passkeys (:mod:`.passkeys`) and
recovery codes (:mod:`.recovery_codes`). Each module owns its rows; the
enrolment and sign-in flows call them."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import CharField, Value

from ...models import Authenticator, Passkey

__all__ = ["second_factors"]


def second_factors(user: AbstractBaseUser) -> frozenset[str]:
    """Which factors ``user`` has beyond the first: ``"totp"`` (an enabled
    authenticator app), ``"passkey"`` (one or more). One query."""
    app = (
        Authenticator.objects.filter(
            user_id=user.pk, kind=Authenticator.Kind.TOTP, confirmed_at__isnull=False
        )
        .exclude(secret="")
        .annotate(factor=Value("totp", output_field=CharField()))
        .values_list("factor", flat=True)
    )
    keys = (
        Passkey.objects.filter(user_id=user.pk)
        .annotate(factor=Value("passkey", output_field=CharField()))
        .values_list("factor", flat=True)
    )
    return frozenset(app.union(keys))
