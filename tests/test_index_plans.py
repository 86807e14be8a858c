"""Every query of code-verify, verify-email and login uses an index at scale.

PostgreSQL rightly scans small tables, so each test first seeds 20 000 rows into
the user table and every package table in SQL and ANALYZEs them, then captures
the queries an endpoint runs through the test client and EXPLAINs each SELECT and
UPDATE: none may plan a sequential scan of those tables. PostgreSQL only (the
plans are its own); skipped elsewhere, except that CI with
``KINWISE_TEST_DB=postgres`` must run it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from kinwise_auth.models import (
    AuthEvent,
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
)
from kinwise_auth.services.secrets import mint_link, mint_login_code

from .conftest import PASSWORD
from .seeding import user_columns

pytestmark = pytest.mark.django_db

ROWS = 20_000
PREFIX = "/api/v1/auth/"


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor == "postgresql":
        return
    reason = f"index plans are PostgreSQL's; this run uses {connection.vendor}"
    if (
        os.environ.get("CI", "").strip().lower() == "true"
        and os.environ.get("KINWISE_TEST_DB") == "postgres"
    ):
        pytest.fail(reason)
    pytest.skip(reason)


def _seed() -> None:
    """ROWS users with identities, and ROWS each of codes, tokens, emails, events."""
    model = get_user_model()
    users = model._meta.db_table
    email = model._meta.get_field(model.get_email_field_name()).column
    columns, values = user_columns("'seed' || g || '@seed.example'", "!")
    owner = (
        f"(SELECT min(id) FROM {users} WHERE {email} LIKE 'seed%@seed.example') "
        f"+ g % {ROWS}"
    )
    old = "now() - (g % 1440) * interval '1 minute'"
    statements = [
        f"INSERT INTO {users} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM generate_series(1, {ROWS}) g",
        f"INSERT INTO {EmailIdentity._meta.db_table} "
        "(user_id, email, email_normalized, verified_at, created_at) "
        f"SELECT id, {email}, {email}, now(), now() FROM {users} "
        f"WHERE {email} LIKE 'seed%@seed.example'",
        f"INSERT INTO {LoginCode._meta.db_table} (user_id, code_hash, created_at, "
        "expires_at, attempts, used_at) "
        f"SELECT {owner}, md5('c' || g) || md5('C' || g), {old}, {old}, 0, now() "
        f"FROM generate_series(1, {ROWS}) g",
        f"INSERT INTO {LinkToken._meta.db_table} (user_id, purpose, token_hash, "
        "email, created_at, expires_at, used_at) "
        f"SELECT {owner}, 'verify_email', md5('t' || g) || md5('T' || g), '', "
        f"{old}, {old}, now() FROM generate_series(1, {ROWS}) g",
        f"INSERT INTO {OutboxEmail._meta.db_table} (kind, user_id, recipient, "
        "context, status, attempts, available_at, last_error, created_at) "
        f"SELECT 'login_code', {owner}, 'x@seed.example', '{{}}', 'sent', 1, "
        f"{old}, '', {old} FROM generate_series(1, {ROWS}) g",
        f"INSERT INTO {AuthEvent._meta.db_table} (event_type, user_id, user_agent, "
        f"extra, created_at) SELECT 'login_succeeded', {owner}, '', '{{}}', {old} "
        f"FROM generate_series(1, {ROWS}) g",
    ]
    tables = [users] + [
        m._meta.db_table
        for m in (EmailIdentity, LoginCode, LinkToken, OutboxEmail, AuthEvent)
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
        for table in tables:
            cursor.execute(f"ANALYZE {table}")


def _seq_scans(plan: dict[str, Any]) -> list[str]:
    """Relations of the seeded tables that ``plan`` scans sequentially."""
    seeded = get_user_model()._meta.db_table
    found = []
    if plan.get("Node Type") == "Seq Scan":
        relation = plan.get("Relation Name", "")
        if relation.startswith("kinwise_auth_") or relation == seeded:
            found.append(relation)
    for child in plan.get("Plans", []):
        found.extend(_seq_scans(child))
    return found


def _assert_indexed(captured: CaptureQueriesContext) -> None:
    explained = 0
    problems = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
                continue
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            raw = cursor.fetchone()[0]
            plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
            explained += 1
            scans = _seq_scans(plan)
            if scans:
                problems.append(f"Seq Scan on {', '.join(scans)}: {sql}")
    assert explained, "no SELECT or UPDATE captured"
    assert not problems, "\n".join(problems)


def _new_code(user: Any) -> str:
    return mint_login_code(user=user)


def _new_link(user: Any) -> str:
    return mint_link(user=user, purpose=LinkToken.Purpose.VERIFY_EMAIL)


def test_code_verify_uses_indexes(api: Any, make_user: Any) -> None:
    _seed()
    user = make_user("alice@example.com")
    code = _new_code(user)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    url = PREFIX + "otp/verify/"

    with CaptureQueriesContext(connection) as captured:
        body = {"email": "alice@example.com", "code": wrong}
        bad = api.post(url, body, format="json")
        body = {"email": "alice@example.com", "code": code}
        good = api.post(url, body, format="json")

    assert (bad.status_code, good.status_code) == (400, 200)
    _assert_indexed(captured)


def test_verify_email_uses_indexes(api: Any, make_user: Any) -> None:
    _seed()
    token = _new_link(make_user("bob@example.com", verified=False))
    url = PREFIX + "verify-email/"

    with CaptureQueriesContext(connection) as captured:
        assert api.post(url, {"token": token}, format="json").status_code == 200
        assert api.post(url, {"token": token}, format="json").status_code == 200
        assert api.post(url, {"token": "x" * 43}, format="json").status_code == 400

    _assert_indexed(captured)


def test_login_uses_indexes(api: Any, make_user: Any) -> None:
    _seed()
    make_user("carol@example.com")
    url = PREFIX + "login/"

    with CaptureQueriesContext(connection) as captured:
        body = {"email": "carol@example.com", "password": PASSWORD}
        assert api.post(url, body, format="json").status_code == 200
        body = {"email": "carol@example.com", "password": "wrong-password-1"}
        assert api.post(url, body, format="json").status_code == 400
        body = {"email": "nobody@example.com", "password": PASSWORD}
        assert api.post(url, body, format="json").status_code == 400

    _assert_indexed(captured)
