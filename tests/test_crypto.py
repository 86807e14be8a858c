from __future__ import annotations

from typing import Any

from kinwise_auth import crypto


def test_link_tokens_carry_at_least_128_bits() -> None:
    tokens = {crypto.new_link_token() for _ in range(100)}
    assert len(tokens) == 100
    # token_urlsafe(32): 43 characters of base64url, 6 bits each.
    assert all(len(token) * 6 >= 128 for token in tokens)


def test_keyed_hash_depends_on_the_secret_key(settings: Any) -> None:
    digest = crypto.keyed_hash("secret")
    assert len(digest) == 64
    assert digest != crypto.keyed_hash("secret", key="another-key")
    settings.SECRET_KEY = "another-key"
    assert crypto.keyed_hash("secret") == crypto.keyed_hash("secret", key="another-key")


def test_matches_accepts_fallback_keys(settings: Any) -> None:
    stored = crypto.keyed_hash("secret")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "rotated-key"

    assert crypto.matches("secret", stored)
    assert not crypto.matches("other", stored)
    settings.SECRET_KEY_FALLBACKS = []
    assert not crypto.matches("secret", stored)
