"""Secret generation, keyed hashing and constant-time comparison.

Codes and link tokens are stored only as HMAC-SHA256 digests under a key derived
from ``SECRET_KEY`` and a package salt, so a database dump holds nothing usable.
Digests under ``SECRET_KEY_FALLBACKS`` are accepted when checking, so rotating the
key does not kill secrets already emailed.
"""

from __future__ import annotations

import hmac
import secrets

from django.conf import settings
from django.utils.crypto import salted_hmac
from django.views.decorators.debug import sensitive_variables

__all__ = [
    "new_link_token",
    "new_login_code",
    "login_code_message",
    "keyed_hash",
    "candidate_hashes",
    "matches",
]

_SALT = "kinwise_auth.crypto.keyed_hash"
LINK_TOKEN_BYTES = 32  # 256 bits; the contract asks for at least 128.


def new_link_token() -> str:
    """A fresh URL-safe link token carrying 256 bits from :mod:`secrets`."""
    return secrets.token_urlsafe(LINK_TOKEN_BYTES)


@sensitive_variables()
def new_login_code(length: int) -> str:
    """``length`` uniformly random digits from :mod:`secrets`."""
    return f"{secrets.randbelow(10**length):0{length}d}"


@sensitive_variables()
def login_code_message(user_pk: object, code: str) -> str:
    """What a login code's hash is taken over: bound to its user, so a code's
    hash says nothing about another account's, and a code works for one user."""
    return f"login_code:{user_pk}:{code}"


@sensitive_variables()
def keyed_hash(secret: str, *, key: str | None = None) -> str:
    """Hex HMAC-SHA256 of ``secret`` under the current (or the given) secret key."""
    return salted_hmac(_SALT, secret, secret=key, algorithm="sha256").hexdigest()


@sensitive_variables()
def candidate_hashes(secret: str) -> list[str]:
    """Digests of ``secret`` under ``SECRET_KEY`` then each of its fallbacks."""
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [keyed_hash(secret, key=key) for key in keys]


@sensitive_variables()
def matches(secret: str, stored_hash: str) -> bool:
    """Whether ``secret`` hashes to ``stored_hash`` under any accepted key."""
    found = False
    for candidate in candidate_hashes(secret):
        # No early exit: the time taken does not say which key matched.
        found |= hmac.compare_digest(candidate, stored_hash)
    return found
