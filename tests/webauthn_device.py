"""A software passkey authenticator for the tests: ES256 keys, "none" attestation.

It answers the JSON options the API gives the way a browser and a platform
authenticator would (``PublicKeyCredential.toJSON()`` form), with every field a
test may want to get wrong on purpose: the origin, the RP id, the sign count,
the user-verified flag. ``tests/test_passkeys.py`` first proves its answers
against py_webauthn's own verification, then uses it against the endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


def unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@dataclass
class Credential:
    """One discoverable credential the device holds."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


@dataclass
class SoftwareAuthenticator:
    """A device with resident ES256 keys; ``origin`` is the page calling it."""

    origin: str
    counting: bool = True  # False: a synced passkey, whose count stays 0
    credentials: list[Credential] = field(default_factory=list)

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        user_verified: bool = True,
        challenge: bytes | None = None,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """Answer creation options with a new credential (kept on the device)."""
        rp = rp_id or options["rp"]["id"]
        excluded = {unb64(c["id"]) for c in options.get("excludeCredentials", [])}
        if any(c.credential_id in excluded for c in self.credentials):
            raise ValueError("InvalidStateError: a credential here is excluded")
        key = ec.generate_private_key(ec.SECP256R1())
        credential = Credential(
            credential_id=credential_id or secrets.token_bytes(32),
            private_key=key,
            rp_id=rp,
            user_handle=unb64(options["user"]["id"]),
        )
        self.credentials.append(credential)
        numbers = key.public_key().public_numbers()
        cose = cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        attested = (
            bytes(16)  # AAGUID: none given
            + len(credential.credential_id).to_bytes(2, "big")
            + credential.credential_id
            + cose
        )
        flags = UP | AT | (UV if user_verified else 0)
        auth_data = self._auth_data(rp, flags, 0) + attested
        client_data = self._client_data(
            "webauthn.create", challenge or unb64(options["challenge"]), origin
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64(credential.credential_id),
            "rawId": b64(credential.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64(client_data),
                "attestationObject": b64(attestation),
                "transports": ["internal"],
            },
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        user_verified: bool = True,
        sign_count: int | None = None,
        credential: Credential | None = None,
        challenge: bytes | None = None,
    ) -> dict[str, Any]:
        """Answer request options with a credential of the options' RP id (the
        first allowed one, or the newest when none is listed)."""
        chosen = credential or self._choose(options)
        if sign_count is None:
            if self.counting:
                chosen.sign_count += 1
            sign_count = chosen.sign_count
        flags = UP | (UV if user_verified else 0)
        auth_data = self._auth_data(rp_id or chosen.rp_id, flags, sign_count)
        client_data = self._client_data(
            "webauthn.get", challenge or unb64(options["challenge"]), origin
        )
        signature = chosen.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64(chosen.credential_id),
            "rawId": b64(chosen.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": b64(chosen.user_handle),
            },
        }

    def _choose(self, options: dict[str, Any]) -> Credential:
        allowed = {unb64(c["id"]) for c in options.get("allowCredentials") or []}
        mine = [c for c in self.credentials if c.rp_id == options["rpId"]]
        if allowed:
            mine = [c for c in mine if c.credential_id in allowed]
        if not mine:
            raise ValueError("NotAllowedError: no credential for these options")
        return mine[-1]

    def _client_data(self, kind: str, challenge: bytes, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": b64(challenge),
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    @staticmethod
    def _auth_data(rp_id: str, flags: int, sign_count: int) -> bytes:
        return (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([flags])
            + sign_count.to_bytes(4, "big")
        )
