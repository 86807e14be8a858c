"""Query budgets per endpoint (the request only: delivery runs in the worker).

register, new address: identity lookup, user, identity, outbox row, audit row.
register, held address: identity lookup, outbox row, audit row.
verify-email: token (locked), identity (locked), mark token used, mark identity
verified, activate user, welcome outbox row, audit row; a used or unknown token
stops after the reads.
resend-verification: identity lookup, outbox row, audit row, whatever the account.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail

from .conftest import register_body

pytestmark = pytest.mark.django_db(transaction=True)

REGISTER = "/api/v1/auth/register/"
VERIFY = "/api/v1/auth/verify-email/"


@pytest.mark.parametrize(
    ("email", "queries"),
    [("new@example.com", 5), ("verified@example.com", 3), ("pending@example.com", 3)],
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

    with assert_queries(7):
        assert api.post(VERIFY, {"token": token}, format="json").status_code == 200
    with assert_queries(2):
        assert api.post(VERIFY, {"token": token}, format="json").status_code == 200
    with assert_queries(1):
        assert api.post(VERIFY, {"token": "x" * 43}, format="json").status_code == 400
    with assert_queries(0):
        assert api.post(VERIFY, {"token": 5}, format="json").status_code == 400
