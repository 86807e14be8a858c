"""The WebAuthn ceremonies, on py_webauthn: options out, answers checked.

Nothing here touches a row but the caller's; every refusal is one exception,
:class:`Refused`, whose ``reason`` is for the audit log only (the API answers
``invalid_credentials`` whatever it was).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils.crypto import salted_hmac
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    options_to_json_dict,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ... import crypto, relying_party
from ...conf import auth_settings
from ...models import Passkey

__all__ = [
    "Refused",
    "NewCredential",
    "Assertion",
    "new_challenge",
    "challenge_hashes",
    "challenge_of",
    "credential_id_of",
    "user_handle",
    "credential_ids",
    "creation_options",
    "request_options",
    "verify_creation",
    "verify_assertion",
]

CHALLENGE_BYTES = 32
#: WebAuthn's bound on a credential id: a longer one is refused, never stored.
MAX_CREDENTIAL_ID_BYTES = 1023
#: Client data is a small JSON object; a longer one is refused unread.
MAX_CLIENT_DATA_BYTES = 4096
# The library raises these, beyond its own, on answers it cannot parse; JSON
# nested deep enough raises RecursionError.
_MALFORMED = (
    WebAuthnException,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    RecursionError,
    OverflowError,
)
_TRANSPORTS = {transport.value for transport in AuthenticatorTransport}


class Refused(Exception):
    """A ceremony's answer that proves nothing; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class NewCredential:
    """A verified registration: what the passkey row keeps."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    backed_up: bool
    transports: list[str]


@dataclass(frozen=True)
class Assertion:
    """A verified sign-in answer."""

    sign_count: int
    backed_up: bool


def new_challenge() -> bytes:
    """32 random bytes from :mod:`secrets`."""
    return secrets.token_bytes(CHALLENGE_BYTES)


def challenge_hashes(challenge: bytes, purpose: str, user_pk: Any) -> list[str]:
    """The keyed hashes a challenge is stored and found by, bound to its
    purpose and user (None for a passwordless sign-in's): a challenge issued for
    one never matches a row of another."""
    encoded = _b64(challenge)
    owner = "-" if user_pk is None else str(user_pk)
    return crypto.candidate_hashes(f"passkey:{purpose}:{owner}:{encoded}")


def challenge_of(credential: Any) -> bytes | None:
    """The challenge the browser signed into ``credential``'s client data; None
    if there is no readable one."""
    try:
        return _unb64(_client_data(credential)["challenge"])
    except (*_MALFORMED, binascii.Error):
        return None


def _client_data(credential: Any) -> dict[str, Any]:
    raw = _unb64(credential["response"]["clientDataJSON"])
    if len(raw) > MAX_CLIENT_DATA_BYTES:
        raise ValueError("client data too long")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise TypeError("client data is not an object")
    return data


def _refuse_framed(credential: Any) -> None:
    """An answer made in a frame of another origin (``crossOrigin``) is refused:
    py_webauthn does not look, and a page of an allowed origin framed by
    another site must not run a ceremony for it."""
    try:
        framed = _client_data(credential).get("crossOrigin") is True
    except (*_MALFORMED, binascii.Error):
        return  # unreadable: the library refuses it
    if framed:
        raise Refused("cross_origin")


def credential_id_of(credential: Any) -> bytes | None:
    """The credential id an answer names (its ``rawId``); None if unreadable or
    longer than WebAuthn allows."""
    try:
        found = _unb64(credential["rawId"])
    except (*_MALFORMED, binascii.Error):
        return None
    return found if len(found) <= MAX_CREDENTIAL_ID_BYTES else None


def credential_ids(user_pk: Any) -> list[bytes]:
    """The credential ids of a user's passkeys: to exclude, or to allow."""
    return [
        bytes(c)
        for c in Passkey.objects.filter(user_id=user_pk).values_list(
            "credential_id", flat=True
        )
    ]


def user_handle(user: AbstractBaseUser) -> bytes:
    """The opaque id a passkey carries for ``user``: the same for every passkey
    of theirs, and neither their primary key nor their address. An existing
    passkey's handle is kept (a rotated ``SECRET_KEY`` does not change it)."""
    kept = (
        Passkey.objects.filter(user_id=user.pk)
        .values_list("user_handle", flat=True)
        .first()
    )
    if kept:
        return bytes(kept)
    return salted_hmac(
        "kinwise_auth.passkeys.user_handle", str(user.pk), algorithm="sha256"
    ).digest()


def creation_options(
    *,
    challenge: bytes,
    handle: bytes,
    user_name: str,
    display_name: str,
    exclude: Iterable[bytes],
) -> dict[str, Any]:
    """``navigator.credentials.create()``'s ``publicKey`` options, as JSON: a
    discoverable credential (resident key required), user verification
    preferred, "none" attestation, the user's passkeys excluded."""
    options = generate_registration_options(
        rp_id=relying_party.rp_id(),
        rp_name=relying_party.rp_name(),
        user_id=handle,
        user_name=user_name,
        user_display_name=display_name,
        challenge=challenge,
        timeout=_timeout_ms(),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in exclude],
    )
    return dict(options_to_json_dict(options))


def request_options(
    *, challenge: bytes, allow: Iterable[bytes] | None, require_verification: bool
) -> dict[str, Any]:
    """``navigator.credentials.get()``'s ``publicKey`` options, as JSON. No
    ``allow`` (None): a discoverable credential, chosen on the device."""
    options = generate_authentication_options(
        rp_id=relying_party.rp_id(),
        challenge=challenge,
        timeout=_timeout_ms(),
        allow_credentials=None
        if allow is None
        else [PublicKeyCredentialDescriptor(id=c) for c in allow],
        user_verification=UserVerificationRequirement.REQUIRED
        if require_verification
        else UserVerificationRequirement.PREFERRED,
    )
    return dict(options_to_json_dict(options))


def verify_creation(credential: Any, challenge: bytes) -> NewCredential:
    """Check a registration answer against ``challenge``, the RP id and the
    origins (py_webauthn does the checking). Raises :class:`Refused`."""
    _refuse_framed(credential)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=relying_party.rp_id(),
            expected_origin=relying_party.origins(),
        )
        if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
            raise Refused("credential_id")
        # A key that cannot verify anything would be a dead second factor.
        decoded_public_key_to_cryptography(
            decode_credential_public_key(verified.credential_public_key)
        )
    except _MALFORMED as exc:
        raise Refused(f"registration: {type(exc).__name__}") from None
    transports = credential["response"].get("transports")
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=str(verified.aaguid),
        backed_up=bool(verified.credential_backed_up),
        transports=[t for t in transports if isinstance(t, str) and t in _TRANSPORTS][
            :8
        ]
        if isinstance(transports, list)
        else [],
    )


def verify_assertion(
    credential: Any,
    *,
    challenge: bytes,
    passkey: Passkey,
    require_verification: bool,
) -> Assertion:
    """Check a sign-in answer of ``passkey`` against ``challenge``, the RP id
    and the origins, its signature by the stored key, then its sign count.

    The count is judged here, after the signature, not by the library (which
    judges it first): only a genuine answer whose count went back is a sign of
    a cloned authenticator (reason ``sign_count``). Raises :class:`Refused`.
    """
    _refuse_framed(credential)
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=relying_party.rp_id(),
            expected_origin=relying_party.origins(),
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=0,
            require_user_verification=require_verification,
        )
    except _MALFORMED as exc:
        raise Refused(f"assertion: {type(exc).__name__}") from None
    handle = _user_handle_in(credential)
    if handle is not None and handle != bytes(passkey.user_handle):
        raise Refused("user_handle")
    count, stored = verified.new_sign_count, passkey.sign_count
    if (count or stored) and count <= stored:
        raise Refused("sign_count")
    return Assertion(sign_count=count, backed_up=bool(verified.credential_backed_up))


def _user_handle_in(credential: Any) -> bytes | None:
    try:
        value = credential["response"].get("userHandle")
        return _unb64(value) if value else None
    except (*_MALFORMED, binascii.Error):
        raise Refused("user_handle") from None


def _timeout_ms() -> int:
    return int(auth_settings.WEBAUTHN_CHALLENGE_LIFETIME.total_seconds() * 1000)


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
