"""Query budgets per endpoint (the request only: delivery runs in the worker).

register, new address: identity lookup, user, identity, outbox row, audit row.
register, held address: the same five: a throwaway user and identity are inserted
and rolled back, so a taken address costs what a new one does.
verify-email: the token's user (the per-account limit), token (locked), identity
(locked), mark token used, mark identity verified, activate user, welcome outbox
row, audit row; a used or unknown token stops after the reads.
resend-verification: identity lookup, outbox row, audit row, whatever the account.
otp/request: the same three, whatever the account.
otp/verify: identity, the live code (locked), then either the attempt counter and
a failure audit row, or marking it used and what a session costs: the outstanding
refresh token (blacklist app), the audit row and ``last_login``.
login: identity (the backend), then a session; a failure reads the identity again
for the pending check and writes an audit row, on known and unknown addresses alike.
token/refresh (no rotation): the blacklist check and the user.
me: the user (JWT authentication).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail

from .conftest import PASSWORD, register_body

pytestmark = pytest.mark.django_db(transaction=True)

REGISTER = "/api/v1/auth/register/"
VERIFY = "/api/v1/auth/verify-email/"


@pytest.mark.parametrize(
    ("email", "queries"),
    [("new@example.com", 5), ("verified@example.com", 5), ("pending@example.com", 5)],
)
def test_register(
    api: Any, make_user: Any, broker: Any, assert_queries: Any, email: str, queries: int
) -> None:
    make_user("verified@example.com")
    make_user("pending@example.com", verified=False)

    with assert_queries(queries):
        response = api.post(REGISTER, register_body(email), format="json")

    assert response.status_code == 201
    assert len(broker) == 1


def test_verify_email(api: Any, broker: Any, assert_queries: Any) -> None:
    api.post(REGISTER, register_body(), format="json")
    broker.drain()
    token = re.search(r"token=([\w\-]+)", mail.outbox[0].body).group(1)  # type: ignore[union-attr]

    with assert_queries(8):
        assert api.post(VERIFY, {"token": token}, format="json").status_code == 200
    with assert_queries(3):
        assert api.post(VERIFY, {"token": token}, format="json").status_code == 200
    with assert_queries(2):
        assert api.post(VERIFY, {"token": "x" * 43}, format="json").status_code == 400
    with assert_queries(0):
        assert api.post(VERIFY, {"token": 5}, format="json").status_code == 400


def code_from_outbox() -> str:
    match = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE)
    assert match
    return match.group(1)


@pytest.mark.parametrize("email", ["a@example.com", "unknown@example.com"])
def test_otp_request(
    api: Any, make_user: Any, broker: Any, assert_queries: Any, email: str
) -> None:
    make_user("a@example.com")

    with assert_queries(3):
        api.post("/api/v1/auth/otp/request/", {"email": email}, format="json")

    assert len(broker) == 1


def test_otp_verify(api: Any, make_user: Any, broker: Any, assert_queries: Any) -> None:
    make_user("a@example.com")
    api.post("/api/v1/auth/otp/request/", {"email": "a@example.com"}, format="json")
    broker.drain()
    code = code_from_outbox()
    url = "/api/v1/auth/otp/verify/"
    bad = f"{(int(code) + 1) % 10**6:06d}"

    with assert_queries(4):
        api.post(url, {"email": "a@example.com", "code": bad}, format="json")
    with assert_queries(2):
        api.post(url, {"email": "nobody@example.com", "code": code}, format="json")
    with assert_queries(6):
        response = api.post(
            url, {"email": "a@example.com", "code": code}, format="json"
        )
    assert response.status_code == 200


def test_login_and_session(api: Any, make_user: Any, assert_queries: Any) -> None:
    make_user("a@example.com")
    url = "/api/v1/auth/login/"

    with assert_queries(3):
        api.post(url, {"email": "a@example.com", "password": "nope"}, format="json")
    with assert_queries(3):
        api.post(url, {"email": "zz@example.com", "password": "nope"}, format="json")
    with assert_queries(4):
        tokens = api.post(
            url, {"email": "a@example.com", "password": PASSWORD}, format="json"
        ).json()
    with assert_queries(2):
        api.post(
            "/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
        )
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    with assert_queries(1):
        assert api.get("/api/v1/auth/me/").status_code == 200
