"""Every kind of emailed secret, one module each: how it is minted, checked,
superseded and retired, and who may receive it.

A new kind of secret is a model on :class:`~kinwise_auth.models.OneTimeSecret`
and a module here; flows in :mod:`kinwise_auth.services` and the email builders
in :mod:`kinwise_auth.emails` call it, and nothing else touches its rows.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from ...models import MfaChallenge
from .links import (
    link_owner,
    lock_link,
    mint_link,
    require_live,
    supersede_links,
    use_link,
)
from .login_codes import (
    CodeCheck,
    mint_login_code,
    supersede_login_codes,
    use_login_code,
)

__all__ = [
    "mint_link",
    "link_owner",
    "lock_link",
    "require_live",
    "use_link",
    "supersede_links",
    "CodeCheck",
    "mint_login_code",
    "use_login_code",
    "supersede_login_codes",
    "retire_secrets",
]


def retire_secrets(user: AbstractBaseUser) -> None:
    """Supersede every live link and login code of ``user``.

    After a password reset or change, or a move to another address, nothing
    mailed before may still act on the account: not a reset link sent to an
    address the user left, nor an email change an intruder started.
    """
    supersede_links(user)
    supersede_login_codes(user)
    # A sign-in waiting for its second factor began with the old password.
    MfaChallenge.objects.filter(user_id=user.pk).supersede()
