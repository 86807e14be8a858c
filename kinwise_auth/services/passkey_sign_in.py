"""Passwordless sign-in with a discoverable passkey: no address typed, no email.

The options carry no ``allowCredentials`` (the device offers its passkeys for
this RP id) and a ``challenge_id`` naming the challenge; the answer must verify
the user (PIN or biometric), so the passkey is both factors: its session's
method is ``passkey`` and no second step is asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit
from ..errors import InvalidCredentials
from ..models import EmailIdentity, PasskeyChallenge
from .factors import passkeys
from .meta import RequestMeta
from .passkey_ceremonies import Refused, open_ceremony, prove, spend_challenge
from .sessions import SignIn, sign_in

__all__ = [
    "PasskeyLoginOptions",
    "passkey_login_options",
    "login_with_passkey",
]

REFUSED = _("The passkey could not be checked. Try again.")


@dataclass(frozen=True)
class PasskeyLoginOptions:
    challenge_id: str
    options: dict[str, Any]


def passkey_login_options() -> PasskeyLoginOptions:
    """Request options for any of this site's passkeys, user verification
    required, and the ``challenge_id`` the answer comes back with."""
    row, challenge = open_ceremony(PasskeyChallenge.Purpose.SIGN_IN)
    return PasskeyLoginOptions(
        challenge_id=str(row.public_id),
        options=passkeys.request_options(
            challenge=challenge, allow=None, require_verification=True
        ),
    )


@sensitive_variables()
def login_with_passkey(
    *, challenge_id: Any, credential: Any, meta: RequestMeta
) -> SignIn:
    """Open a session for the owner of the passkey ``credential`` names, if it
    answers the live challenge ``challenge_id`` (once) with the user verified.

    Raises :class:`InvalidCredentials` for every refusal: an unknown passkey,
    another challenge, a wrong origin or RP id, a signature that does not
    verify, a sign count gone back (audited), an account that may not sign in.
    """
    user = None
    try:
        challenge = spend_challenge(
            credential, PasskeyChallenge.Purpose.SIGN_IN, public_id=challenge_id
        )
        passkey = prove(
            credential,
            challenge=challenge,
            user=None,
            require_verification=True,
            meta=meta,
        )
        user = passkey.user
        identity = EmailIdentity.objects.filter(user_id=user.pk).first()
        if identity is None or identity.verified_at is None or not user.is_active:
            raise Refused("inactive")
    except Refused as refused:
        audit.record(
            "login_failed",
            user=user,
            meta=meta,
            extra={"method": "passkey", "reason": refused.reason},
        )
        raise InvalidCredentials(REFUSED) from None
    return sign_in(user, method="passkey", meta=meta)
