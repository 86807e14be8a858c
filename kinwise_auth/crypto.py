"""Secret generation, keyed hashing, constant-time comparison and sealing.

Codes and link tokens are stored only as HMAC-SHA256 digests under a key derived
from ``SECRET_KEY`` and a package salt, so a database dump holds nothing usable.
Digests under ``SECRET_KEY_FALLBACKS`` are accepted when checking, so rotating the
key does not kill secrets already emailed.

A secret the package must read back (a TOTP seed) is sealed instead: AES-GCM under
a key derived from ``SECRET_KEY`` by HKDF with a package salt, bound to what it is
for (``context``, e.g. the authenticator's user), so a sealed value copied to
another row does not open. Values sealed under a fallback key still open, and say
so, for the caller to seal them again under the current key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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
    "new_recovery_code",
    "recovery_code_key",
    "Opened",
    "seal",
    "unseal",
    "SealError",
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
def login_code_message(user_pk: object, code: str, purpose: str = "sign_in") -> str:
    """What an emailed code's hash is taken over: bound to its user (a code's
    hash says nothing about another account's, and a code works for one user)
    and to its purpose (a sign-in code never reauthenticates)."""
    if purpose == "sign_in":
        return f"login_code:{user_pk}:{code}"
    return f"{purpose}_code:{user_pk}:{code}"


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


# Recovery codes: 12 symbols of Crockford's base32 (60 bits): no i, l, o or u,
# and what a person may type for 0 and 1 read as 0 and 1.
_RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RECOVERY_READS = str.maketrans({"o": "0", "i": "1", "l": "1"})
RECOVERY_CODE_LETTERS = 12


@sensitive_variables()
def new_recovery_code() -> str:
    """A recovery code as shown: ``xxxx-xxxx-xxxx``, 60 bits from :mod:`secrets`."""
    letters = "".join(
        secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LETTERS)
    )
    return "-".join(letters[i : i + 4] for i in range(0, RECOVERY_CODE_LETTERS, 4))


def recovery_code_key(code: str) -> str | None:
    """The normal form of a typed recovery code (case, spaces and hyphens
    ignored, o/i/l read as 0/1); None if it cannot be one."""
    letters = "".join(code.lower().split()).replace("-", "").translate(_RECOVERY_READS)
    if len(letters) != RECOVERY_CODE_LETTERS or not set(letters) <= set(
        _RECOVERY_ALPHABET
    ):
        return None
    return letters


_SEAL_SALT = b"kinwise_auth.crypto.seal"
_SEAL_VERSION = "v1"
_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value that opens under no accepted key (or was tampered with)."""


@dataclass(frozen=True)
class Opened:
    """A sealed value opened: its plaintext, and whether it was sealed under a
    fallback key (then seal it again)."""

    plaintext: str
    stale: bool


def _seal_key(secret_key: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=_SEAL_SALT, info=b"aes-gcm"
    ).derive(secret_key.encode())


@sensitive_variables()
def seal(plaintext: str, *, context: str) -> str:
    """``plaintext`` encrypted and authenticated under the current key, bound to
    ``context``: ``v1:<base64url(nonce + ciphertext)>``."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(_seal_key(settings.SECRET_KEY)).encrypt(
        nonce, plaintext.encode(), context.encode()
    )
    return f"{_SEAL_VERSION}:" + base64.urlsafe_b64encode(nonce + sealed).decode()


@sensitive_variables()
def unseal(value: str, *, context: str) -> Opened:
    """Open a value :func:`seal` made for ``context``, under ``SECRET_KEY`` or
    one of its fallbacks. Raises :class:`SealError` otherwise."""
    version, _, payload = value.partition(":")
    try:
        raw = base64.urlsafe_b64decode(payload.encode())
    except (binascii.Error, ValueError):
        raise SealError("not a sealed value") from None
    if version != _SEAL_VERSION or len(raw) <= _NONCE_BYTES:
        raise SealError("not a sealed value")
    nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    for index, key in enumerate(keys):
        try:
            plaintext = AESGCM(_seal_key(key)).decrypt(nonce, sealed, context.encode())
        except InvalidTag:
            continue
        return Opened(plaintext=plaintext.decode(), stale=index > 0)
    raise SealError("opens under no accepted key")
