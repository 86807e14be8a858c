"""The one catalogue of the API's endpoints that every bench calls: for each, its
method and path, how its body is made, and the account and secret a request
needs.

:func:`account` gives a request the account its entry asks for (a bench may
choose another, say a standing one it reuses one request at a time), and
:func:`request` makes the request, minting its secret with
:class:`~bench.common.Accounts`. Nothing here touches Django until called.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlencode

from bench.common import OTHER_PASSWORD, PASSWORD, Accounts

API = "/api/v1/auth/"

#: method, path from the site root (a GET's query included), JSON body or None,
#: HTTP headers.
Request = tuple[str, str, dict[str, Any] | None, dict[str, str]]


class Account(enum.Enum):
    """Whose request it is."""

    ADDRESS = "no account: a fresh address"
    KNOWN = "the standing verified account, shared by every request"
    PENDING = "the standing pending account, shared by every request"
    # The request spends the account or its secret (minting a code or link
    # supersedes the user's live one), changes its password or address, or
    # locks its rows: requests in flight together need one account each.
    OWN = "a verified account of its own"
    OWN_PENDING = "a pending account of its own"


# What is minted for the account first: a login code, a refresh token, or a
# link token of that LinkToken purpose.
CODE = "code"
REFRESH = "refresh"
VERIFY_LINK = "verify_email"
RESET_LINK = "password_reset"
CHANGE_LINK = "email_change"


@dataclass(frozen=True)
class Input:
    """What a body is made of."""

    email: str  # the account's address, or the fresh one to register
    password: str = PASSWORD  # the account's current password
    new_password: str = OTHER_PASSWORD
    new_email: str = ""  # a fresh address to move to
    secret: str = ""  # the code or token minted for the request


@dataclass(frozen=True)
class Endpoint:
    """One way to call an endpoint."""

    method: str
    path: str  # under API
    account: Account
    fields: dict[str, str]  # body field: the Input attribute it carries
    secret: str = ""  # CODE, REFRESH, a link purpose, or nothing
    bearer: bool = False  # signed in as the account
    hashes: bool = False  # hashes a password (slow with Django's default)
    sets_password: bool = False  # the account's password is new_password after
    variant: bool = False  # another way in to the endpoint listed before it

    @property
    def name(self) -> str:
        """As the benches print it."""
        return f"{self.path} ({self.method})" if self.variant else self.path

    def body(self, given: Input) -> dict[str, str]:
        """The fields, filled from ``given``."""
        return {key: getattr(given, attr) for key, attr in self.fields.items()}


# Bodies: each field and the Input attribute it carries.
_EMAIL = {"email": "email"}
_TOKEN = {"token": "secret"}
_REFRESH = {"refresh": "secret"}
_NEW_PASSWORD = {"new_password": "new_password", "new_password_confirm": "new_password"}
_KNOWN, _PENDING, _OWN = Account.KNOWN, Account.PENDING, Account.OWN

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "register/",
        Account.ADDRESS,
        {**_EMAIL, "password": "password", "password_confirm": "password"},
        hashes=True,
    ),
    Endpoint("POST", "verify-email/", Account.OWN_PENDING, _TOKEN, VERIFY_LINK),
    Endpoint(
        "GET", "verify-email/", Account.OWN_PENDING, _TOKEN, VERIFY_LINK, variant=True
    ),
    Endpoint("POST", "resend-verification/", _PENDING, _EMAIL),
    Endpoint("POST", "otp/request/", _KNOWN, _EMAIL),
    Endpoint("POST", "otp/verify/", _OWN, {**_EMAIL, "code": "secret"}, CODE),
    Endpoint("POST", "login/", _KNOWN, {**_EMAIL, "password": "password"}, hashes=True),
    Endpoint("POST", "token/refresh/", _KNOWN, _REFRESH, REFRESH),
    Endpoint("POST", "logout/", _KNOWN, _REFRESH, REFRESH),
    Endpoint("GET", "me/", _KNOWN, {}, bearer=True),
    Endpoint("POST", "password/reset/", _KNOWN, _EMAIL),
    Endpoint(
        "POST",
        "password/reset/confirm/",
        _OWN,
        {**_TOKEN, **_NEW_PASSWORD},
        RESET_LINK,
        hashes=True,
        sets_password=True,
    ),
    Endpoint(
        "POST",
        "password/change/",
        _OWN,
        {"current_password": "password", **_NEW_PASSWORD},
        bearer=True,
        hashes=True,
        sets_password=True,
    ),
    Endpoint(
        "POST",
        "email/change/",
        _OWN,
        {"new_email": "new_email", "password": "password"},
        bearer=True,
        hashes=True,
    ),
    Endpoint("POST", "email/change/confirm/", _OWN, _TOKEN, CHANGE_LINK),
    Endpoint(
        "POST",
        "account/delete/",
        _OWN,
        {"password": "password"},
        bearer=True,
        hashes=True,
    ),
]

BY_NAME = {ep.name: ep for ep in ENDPOINTS}


def account(ep: Endpoint, acc: Accounts) -> Any:
    """The account ``ep``'s entry asks for: a standing one, a new one, or None
    (a fresh address)."""
    if ep.account is Account.KNOWN:
        return acc.standing("known")
    if ep.account is Account.PENDING:
        return acc.standing("pending", verified=False)
    if ep.account is Account.OWN:
        return acc.user(acc.email("own"))
    if ep.account is Account.OWN_PENDING:
        return acc.user(acc.email("pending"), verified=False)
    return None


def request(ep: Endpoint, acc: Accounts, user: Any = None, email: str = "") -> Request:
    """A fresh request to ``ep`` as ``user``, its secret minted now.

    Without ``user`` it is made from ``email`` alone, or a fresh address. A
    request that sets a password sets the other of the two, and ``acc``
    remembers it, so a reused account alternates.
    """
    if user is not None:
        email = acc.address(user)
    elif not email:
        email = acc.email("new")
    password = acc.password(user)
    new_password = OTHER_PASSWORD if password == PASSWORD else PASSWORD
    if ep.sets_password:
        acc.passwords[user.pk] = new_password
    moves = ep.secret == CHANGE_LINK or "new_email" in ep.fields.values()
    new_email = acc.email("moved") if moves else ""
    secret = ""
    if ep.secret == CODE:
        secret = acc.code(user)
    elif ep.secret == REFRESH:
        secret = acc.refresh(user)
    elif ep.secret:
        secret = acc.link(user, ep.secret, email=new_email)
    body = ep.body(Input(email, password, new_password, new_email, secret))
    headers = {"Authorization": acc.access(user)} if ep.bearer else {}
    if ep.method == "GET":
        query = f"?{urlencode(body)}" if body else ""
        return ep.method, API + ep.path + query, None, headers
    return ep.method, API + ep.path, body, headers


def through(client: Any, req: Request) -> Callable[[], Any]:
    """``req`` ready to go through a Django test client (DRF's ``APIClient``):
    call the result to send it. Make it before the clock starts."""
    method, path, body, headers = req
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    if method == "GET":
        return partial(client.get, path, **meta)
    return partial(client.post, path, body, format="json", **meta)
