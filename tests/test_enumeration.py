"""Security rule 5: no account enumeration, by answer or by work.

For each endpoint that takes an address a stranger may probe, one address is sent
twice: once while no account holds it, once while an active, pending (registered,
unverified) or deactivated (verified, then ``is_active=False``) account does. The
two requests must be indistinguishable to the client (status, body and headers,
``Date`` aside) and do the same work: the same queries, statement by statement,
the same number of password hashes, and the same number of publishes.

One pair differs in verbs only: registering a pending address replaces the
pending registration in place, so where a new account INSERTs its user and
identity rows it UPDATEs them — one write to the same table, in the same order.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from kinwise_auth.models import EmailIdentity

from .conftest import PASSWORD, TRANSACTION_CONTROL, register_body, session_tokens
from .test_abuse import hashes  # noqa: F401  (the hasher-counting fixture)

pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth"
TARGET = "target@example.com"

BODIES: dict[str, Callable[[str], dict[str, Any]]] = {
    "otp/request/": lambda email: {"email": email},
    "resend-verification/": lambda email: {"email": email},
    "password/reset/": lambda email: {"email": email},
    "register/": register_body,
    # Signed in as another account, asking to move to the probed address.
    "email/change/": lambda email: {"new_email": email, "password": PASSWORD},
}
SIGNED_IN = {"email/change/"}

# How each kind of account is made for the probed address.
CASES: dict[str, dict[str, bool]] = {
    "active": {},
    "pending": {"verified": False},
    "deactivated": {"active": False},
}


@dataclass(frozen=True)
class Observation:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    statements: tuple[str, ...]
    queries: int
    hashes: int
    publishes: int


def statement(sql: str) -> str:
    """A query's verb and table: what it does, without the values it carries."""
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql)
    return f"{sql.split()[0].upper()} {table.group(1) if table else ''}".strip()


def one_row_writes_alike(observation: Observation) -> Observation:
    """The observation with INSERT and UPDATE both read as a WRITE."""
    statements = tuple(
        re.sub(r"^(INSERT|UPDATE) ", "WRITE ", s) for s in observation.statements
    )
    return dataclasses.replace(observation, statements=statements)


def observe(
    client: APIClient, path: str, hash_calls: list[int], broker: list[Any]
) -> Observation:
    cache.clear()  # a fresh rate-limit budget for each request
    hash_calls.clear()
    broker.clear()
    with CaptureQueriesContext(connection) as context:
        response = client.post(f"{AUTH}/{path}", BODIES[path](TARGET), format="json")
    sql = [query["sql"] for query in context.captured_queries]
    return Observation(
        status=response.status_code,
        body=response.content,
        headers=tuple(sorted((k, v) for k, v in response.items() if k != "Date")),
        statements=tuple(
            statement(s)
            for s in sql
            if not s.lstrip().upper().startswith(TRANSACTION_CONTROL)
        ),
        queries=len(sql),
        hashes=len(hash_calls),
        publishes=len(broker),
    )


def forget(address: str) -> None:
    """Delete whatever account the unknown-address request made (register/ does)."""
    for identity in EmailIdentity.objects.filter(email_normalized=address):
        identity.user.delete()


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("path", list(BODIES))
def test_an_account_is_indistinguishable_from_no_account(
    path: str,
    case: str,
    make_user: Any,
    broker: list[Any],
    hashes: list[int],  # noqa: F811
) -> None:
    client = APIClient()
    if path in SIGNED_IN:
        requester = make_user("requester@example.com")
        access = session_tokens(requester)["access"]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    # Warm whatever a first request loads once per process.
    client.post(f"{AUTH}/{path}", BODIES[path]("warm-up@example.com"), format="json")

    unknown = observe(client, path, hashes, broker)
    forget(TARGET)
    make_user(TARGET, **CASES[case])
    held = observe(client, path, hashes, broker)

    assert held.status in (200, 201), held.body
    if path == "register/" and case == "pending":
        assert one_row_writes_alike(held) == one_row_writes_alike(unknown)
    else:
        assert held == unknown
    assert held.publishes == 1
    assert held.hashes == (1 if path in ("register/", "email/change/") else 0)
    assert get_user_model()._default_manager.filter(is_active=True).count() == (
        (case == "active") + (path in SIGNED_IN)
    )
