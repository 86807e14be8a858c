"""Security rule 4 at every endpoint: per IP, and per email or account from many IPs.

Each endpoint of ``kinwise_auth.urls`` is called with a well-formed request for one
of two accounts (``alice``, ``bob``). The rates are lowered to 2 per minute for the
kind under test and switched off for the others, so the third request is the first
over the limit: it must answer 429 with ``Retry-After`` and the error shape, while
another key (another IP, another address or account) still gets through.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.urls import URLPattern, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from kinwise_auth import crypto, urls
from kinwise_auth.conf import DEFAULTS
from kinwise_auth.models import LinkToken, MfaChallenge, Passkey
from kinwise_auth.services.secrets import mint_link

from .conftest import PASSWORD, register_body, session_tokens

pytestmark = pytest.mark.django_db

LIMIT = 2  # requests a key may make in the window under test
NEW_PASSWORD = "another-Staple-horse-42"


@dataclass
class Call:
    """One request: the method, the JSON body and the bearer token, if any."""

    method: str = "post"
    body: dict[str, Any] | None = None
    access: str | None = None
    kwargs: dict[str, str] | None = None  # the URL's arguments


@dataclass
class Accounts:
    """Two verified accounts and ways to mint their tokens and links."""

    users: dict[str, Any] = field(default_factory=dict)

    def address(self, who: str, n: int) -> str:
        # Every other request spells the address differently: one budget.
        return f"{who}@example.com" if n % 2 == 0 else f"{who.upper()}@Example.COM"

    def refresh(self, who: str) -> str:
        return session_tokens(self.users[who])["refresh"]

    def access(self, who: str) -> str:
        return session_tokens(self.users[who])["access"]

    def mfa_token(self, who: str) -> str:
        """A live ``mfa_token`` of ``who``'s, as a right password gets one."""
        token = crypto.new_link_token()
        MfaChallenge.objects.create(
            user=self.users[who],
            token_hash=crypto.keyed_hash(token),
            method="password",
            expires_at=timezone.now() + timedelta(minutes=5),
        )
        return token

    def passkey(self, who: str) -> dict[str, Any]:
        """An unsigned answer naming a passkey of ``who``'s (registered once)."""
        credential_id = f"passkey-of-{who}".encode()
        Passkey.objects.get_or_create(
            credential_id=credential_id,
            defaults={
                "user": self.users[who],
                "public_key": b"",
                "user_handle": b"h",
                "aaguid": "",
                "name": "test",
            },
        )
        raw = base64.urlsafe_b64encode(credential_id).decode().rstrip("=")
        return {"id": raw, "rawId": raw, "type": "public-key", "response": {}}

    def link(self, who: str, purpose: str, email: str = "") -> str:
        """A fresh live link of ``purpose`` for ``who``: a new token each call, so
        a per-account limit is shown to count the account, not the token."""
        return mint_link(user=self.users[who], purpose=purpose, email=email)


# url name -> how to call it for ``who`` the n-th time. Every call is well formed,
# so it reaches the per-email or per-account check; none is a 429 by itself.
CALLS: dict[str, Callable[[Accounts, str, int], Call]] = {
    "register": lambda a, who, n: Call(body=register_body(a.address(who, n))),
    "verify-email": lambda a, who, n: Call(
        body={"token": a.link(who, LinkToken.Purpose.VERIFY_EMAIL)}
    ),
    "resend-verification": lambda a, who, n: Call(body={"email": a.address(who, n)}),
    "otp-request": lambda a, who, n: Call(body={"email": a.address(who, n)}),
    "otp-verify": lambda a, who, n: Call(
        body={"email": a.address(who, n), "code": "000000"}
    ),
    # A wrong password: the per-email limit of login/ counts failures.
    "login": lambda a, who, n: Call(
        body={"email": a.address(who, n), "password": "wrong-password-1"}
    ),
    "token-refresh": lambda a, who, n: Call(body={"refresh": a.refresh(who)}),
    "logout": lambda a, who, n: Call(body={"refresh": a.refresh(who)}),
    "me": lambda a, who, n: Call("get", None, a.access(who)),
    "password-reset": lambda a, who, n: Call(body={"email": a.address(who, n)}),
    # A password the validators refuse: the link stays usable, the request counts.
    "password-reset-confirm": lambda a, who, n: Call(
        body={
            "token": a.link(who, LinkToken.Purpose.PASSWORD_RESET),
            "new_password": "short",
            "new_password_confirm": "short",
        }
    ),
    "password-change": lambda a, who, n: Call(
        body={
            "current_password": "wrong-password-1",
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
        access=a.access(who),
    ),
    # The per-email limit counts the new address: ``who``'s target mailbox.
    "email-change": lambda a, who, n: Call(
        body={"new_email": a.address(f"target-{who}", n), "password": PASSWORD},
        access=a.access(who),
    ),
    "email-change-confirm": lambda a, who, n: Call(
        body={
            "token": a.link(
                who, LinkToken.Purpose.EMAIL_CHANGE, f"moved-{who}-{n}@example.com"
            )
        }
    ),
    "session-revoke-confirm": lambda a, who, n: Call(
        body={"token": a.link(who, LinkToken.Purpose.SESSION_REVOKE)}
    ),
    "account-delete": lambda a, who, n: Call(
        body={"password": "wrong-password-1"}, access=a.access(who)
    ),
    "reauthenticate": lambda a, who, n: Call(
        body={"password": "wrong-password-1"}, access=a.access(who)
    ),
    "sessions": lambda a, who, n: Call("get", None, a.access(who)),
    # No password and no reauthentication: refused, and counted.
    "sessions-revoke-others": lambda a, who, n: Call(body={}, access=a.access(who)),
    # An id of nobody's: 404, and counted.
    "session": lambda a, who, n: Call(
        "delete", None, a.access(who), {"session_id": str(uuid.uuid4())}
    ),
    "mfa": lambda a, who, n: Call("get", None, a.access(who)),
    "reauthentication-code": lambda a, who, n: Call(body={}, access=a.access(who)),
    # A fresh token of ``who``'s each time, with a wrong code: counted per account.
    "mfa-authenticate": lambda a, who, n: Call(
        body={"mfa_token": a.mfa_token(who), "code": "000000"}
    ),
    # No password and no reauthentication, or no set-up under way: refused,
    # and counted.
    "mfa-totp-setup": lambda a, who, n: Call(body={}, access=a.access(who)),
    "mfa-totp-confirm": lambda a, who, n: Call(
        body={"code": "000000"}, access=a.access(who)
    ),
    "mfa-totp": lambda a, who, n: Call("delete", {}, a.access(who)),
    "mfa-recovery-codes": lambda a, who, n: Call(body={}, access=a.access(who)),
    "passkeys": lambda a, who, n: Call("get", None, a.access(who)),
    # No proof: refused, and counted.
    "passkey-register-options": lambda a, who, n: Call(body={}, access=a.access(who)),
    # An answer that proves nothing: invalid_credentials, and counted.
    "passkey-register": lambda a, who, n: Call(
        body={"credential": {}}, access=a.access(who)
    ),
    "passkey": lambda a, who, n: Call(
        "delete", None, a.access(who), {"passkey_id": "999999"}
    ),
    "passkey-login-options": lambda a, who, n: Call(body={}),
    # An unsigned answer naming ``who``'s passkey: refused, counted per IP.
    "passkey-login": lambda a, who, n: Call(
        body={"challenge_id": str(uuid.uuid4()), "credential": a.passkey(who)}
    ),
    # No passkey registered: 404, and counted per the token's account.
    "mfa-passkey-options": lambda a, who, n: Call(body={"mfa_token": a.mfa_token(who)}),
    "mfa-passkey-authenticate": lambda a, who, n: Call(
        body={"mfa_token": a.mfa_token(who), "credential": {}}
    ),
    "reauthentication-passkey-options": lambda a, who, n: Call(
        body={}, access=a.access(who)
    ),
}

# Limited per IP only: the options name no account, and a passkey's answer names
# one by a credential id, which is no secret (a budget keyed by it would let a
# stranger lock the owner out; tests/test_passkeys.py).
PER_IP_ONLY = {"passkey-login-options", "passkey-login"}

URL_NAMES = sorted(
    pattern.name
    for pattern in urls.urlpatterns
    if isinstance(pattern, URLPattern) and pattern.name
)


def scope_of(name: str) -> str:
    (pattern,) = (p for p in urls.urlpatterns if getattr(p, "name", None) == name)
    return str(pattern.callback.view_class.scope)


KEYED = [
    (name, kind)
    for name in URL_NAMES
    for kind in sorted(DEFAULTS["RATE_LIMITS"][scope_of(name)])
    if kind != "ip"
]


@pytest.fixture
def accounts(make_user: Any) -> Accounts:
    return Accounts(users={who: make_user(f"{who}@example.com") for who in ("a", "b")})


def send(accounts: Accounts, name: str, who: str, n: int, ip: str) -> Any:
    call = CALLS[name](accounts, who, n)
    client = APIClient(REMOTE_ADDR=ip)
    if call.access:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {call.access}")
    url = reverse(f"kinwise_auth:{name}", kwargs=call.kwargs)
    if call.method == "get":
        return client.get(url)
    if call.method == "delete":
        return client.delete(url)
    return client.post(url, call.body, format="json")


def limit_only(settings: Any, scope: str, kind: str) -> None:
    """``LIMIT`` an hour for ``kind`` in ``scope``; every other kind off. An hour,
    not a minute: a fixed window that ended between the requests would reset
    the count (one run in a few hundred, on a loaded machine, with a minute)."""
    rates = dict.fromkeys(("ip", "email", "account"))
    rates[kind] = f"{LIMIT}/h"
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "RATE_LIMITS": {scope: rates}}


def assert_rate_limited(response: Any) -> None:
    assert response.status_code == 429, response.content
    assert response.json() == {
        "detail": "Too many requests. Please try again later.",
        "code": "rate_limited",
    }
    assert 1 <= int(response["Retry-After"]) <= 3600


def test_every_endpoint_is_called_here() -> None:
    assert set(CALLS) == set(URL_NAMES)


@pytest.mark.parametrize("name", URL_NAMES)
def test_every_scope_has_an_ip_and_an_email_or_account_default(name: str) -> None:
    rates = DEFAULTS["RATE_LIMITS"][scope_of(name)]

    assert rates.get("ip")
    if name in PER_IP_ONLY:
        assert set(rates) == {"ip"}
    else:
        assert rates.get("email") or rates.get("account")


@pytest.mark.parametrize("name", URL_NAMES)
def test_the_per_ip_limit(name: str, accounts: Accounts, settings: Any) -> None:
    limit_only(settings, scope_of(name), "ip")
    for n in range(LIMIT):
        # Two accounts from one IP: it is the IP that is counted.
        response = send(accounts, name, "ab"[n % 2], n, "192.0.2.1")
        assert response.status_code != 429, response.content

    assert_rate_limited(send(accounts, name, "b", LIMIT, "192.0.2.1"))
    assert send(accounts, name, "b", LIMIT, "192.0.2.2").status_code != 429


@pytest.mark.parametrize(("name", "kind"), KEYED)
def test_the_per_email_or_account_limit_holds_from_many_ips(
    name: str, kind: str, accounts: Accounts, settings: Any
) -> None:
    limit_only(settings, scope_of(name), kind)
    for n in range(LIMIT):
        response = send(accounts, name, "a", n, f"198.51.100.{n}")
        assert response.status_code != 429, response.content

    assert_rate_limited(send(accounts, name, "a", LIMIT, "203.0.113.7"))
    # The budget is that address's or account's alone.
    assert send(accounts, name, "b", LIMIT, "203.0.113.8").status_code != 429
