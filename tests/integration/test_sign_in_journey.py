"""Sign-in from registration to logout over real HTTP, broker, worker and SMTP.

register -> verification email -> verify-email -> otp/request -> the code by SMTP
-> otp/verify -> me/ -> token/refresh -> logout -> the refresh token is refused.
Then the two emailed secrets, the verification token and the login code, are looked
for everywhere else the run keeps data: the worker's log, every key and value of the
run's Redis databases, and every row of every table of the test database. They must
exist in clear only in the emails.

Rate limits: the autouse ``_clear_cache`` fixture of ``tests/conftest.py`` clears the
cache (Redis db 15 in this suite) before every test, and this journey makes at most
two requests per scope, within every default limit.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection
from rest_framework_simplejwt.token_blacklist.models import (
    BlacklistedToken,
    OutstandingToken,
)

from kinwise_auth.models import LinkToken, LoginCode, OutboxEmail
from kinwise_auth.publishing import DELIVER_TASK
from tests.celery_app import app as celery_app
from tests.support.accounts import PASSWORD, new_address
from tests.support.brokers import is_redis_url, redis_client
from tests.support.delivery import fail_on_failed_delivery, wait_until_settled
from tests.support.http import request_json
from tests.support.smtp import ReceivedEmail, SMTPServer
from tests.support.workers import Worker

if TYPE_CHECKING:
    from .conftest import PublishedTask

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

VERIFY_SUBJECT = "Verify your app.example.com account"
WELCOME_SUBJECT = "Welcome to app.example.com!"
CODE_SUBJECT = "Your app.example.com login code"
LINK = re.compile(r"https://app\.example\.com/verify-email\?token=([A-Za-z0-9_-]+)")
# login_code.txt puts the code alone on an indented line (lines end in CRLF here).
CODE_LINE = re.compile(r"^[ \t]+([0-9]{6})[ \t]*\r?$", re.MULTILINE)


def read_code(message: ReceivedEmail) -> str:
    """The login code: the one indented line of six digits in the text part."""
    text = message.part("plain")
    codes = CODE_LINE.findall(text)
    assert len(codes) == 1, text
    code = str(codes[0])
    assert code in message.part("html")
    return code


# --- where the run keeps data -------------------------------------------------


def _text(value: Any) -> str:
    """Bytes decoded leniently (a pickled cache value is not all UTF-8)."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _kombu_bodies(text: str) -> list[str]:
    """The decoded bodies of the kombu messages in ``text``, if it holds any.

    Kombu's Redis transport stores a message's body base64-encoded, where a plain
    search cannot see a secret: decode every body found in the JSON.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return []
    bodies: list[str] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            properties = item.get("properties")
            body = item.get("body")
            if (
                isinstance(properties, dict)
                and properties.get("body_encoding") == "base64"
                and isinstance(body, str)
            ):
                with contextlib.suppress(ValueError):  # binascii.Error is one
                    bodies.append(_text(base64.b64decode(body, validate=True)))
            stack.extend(item.values())
    return bodies


def redis_databases() -> dict[str, str]:
    """The Redis databases this run writes to: the broker's, every Redis cache's
    and the result backend's (none in tests/settings.py, but a run may set one)."""
    urls: dict[str, str] = {}
    candidates = [str(celery_app.conf.broker_url)]
    for cache in settings.CACHES.values():
        if "redis" in str(cache["BACKEND"]).lower():
            location = cache["LOCATION"]
            candidates += (
                [location] if isinstance(location, str) else [str(x) for x in location]
            )
    backend = celery_app.conf.result_backend
    if backend:
        candidates.append(str(backend))
    for url in candidates:
        if is_redis_url(url):
            urls.setdefault(url, url)
    return urls


def redis_contents(url: str) -> list[tuple[str, str]]:
    """Every key and every value of the Redis database at ``url``, as
    ``(where, text)`` pairs: SCAN the keys, then read each by its type."""
    # Any: redis-py's reply types are unions of sync and async answers.
    client: Any = redis_client(url)
    found: list[tuple[str, str]] = []
    try:
        for key in client.scan_iter(count=500):
            name = _text(key)
            found.append((f"{url}: key {name!r}", name))
            kind = _text(client.type(key))
            values: list[Any]
            if kind == "none":
                continue  # expired between SCAN and TYPE
            if kind == "string":
                values = [client.get(key)]
            elif kind == "list":
                values = list(client.lrange(key, 0, -1))
            elif kind == "hash":
                values = [x for pair in client.hgetall(key).items() for x in pair]
            elif kind == "set":
                values = list(client.smembers(key))
            elif kind == "zset":
                values = [
                    x
                    for member, score in client.zrange(key, 0, -1, withscores=True)
                    for x in (member, repr(score))
                ]
            elif kind == "stream":
                values = [
                    x
                    for entry_id, fields in client.xrange(key)
                    for x in (entry_id, *[y for pair in fields.items() for y in pair])
                ]
            else:
                pytest.fail(f"{url}: key {name!r} has a type this scan misses: {kind}")
            for value in values:
                text = _text(value)
                found.append((f"{url}: value of {name!r}", text))
                found += [
                    (f"{url}: message body in {name!r}", body)
                    for body in _kombu_bodies(text)
                ]
    finally:
        client.close()
    return found


def _cell_text(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.time):
        # str() prints microseconds as six digits between "." and "+": exactly the
        # shape of a code, so 1 in 10**6 timestamps would match by chance. A secret
        # is never stored as a time of day; the rest of the value is kept.
        return str(value.replace(microsecond=0))
    return _text(value)


def database_contents() -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Every value of every row of every table of the test database's public
    schema, as ``(where, text)`` pairs, and the row count of each table."""
    found: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' "
            "ORDER BY table_name"
        )
        tables = [str(row[0]) for row in cursor.fetchall()]
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            columns = [str(column.name) for column in cursor.description]
            rows = cursor.fetchall()
            counts[table] = len(rows)
            for number, row in enumerate(rows):
                for column, value in zip(columns, row, strict=True):
                    found.append(
                        (f"{table}.{column} (row {number})", _cell_text(value))
                    )
    return found, counts


def leaks(contents: Iterable[tuple[str, str]], code: str, token: str) -> list[str]:
    """Where ``code`` or ``token`` occurs in ``contents``.

    The token (43 URL-safe characters) is matched as a plain substring: it cannot
    occur by chance. The code is six digits, which a longer run of digits (an id,
    a timestamp, a JWT's base64) can contain by chance: it only counts with a
    non-digit (or the start or end) on both sides. A code stored or logged on its
    own, or in a sentence, a key or JSON, is still found.
    """
    code_pattern = re.compile(rf"(?<!\d){re.escape(code)}(?!\d)")
    found: list[str] = []
    for where, text in contents:
        if code_pattern.search(text):
            found.append(f"the login code in {where}")
        if token in text:
            found.append(f"the verification token in {where}")
    return found


# --- the journey --------------------------------------------------------------


def test_sign_in_journey(
    api: str,
    celery_worker: Worker,
    mailbox: SMTPServer,
    published: list[PublishedTask],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    address = new_address("journey")
    delivered = fail_on_failed_delivery(celery_worker, address)

    answer = request_json(
        "POST",
        f"{api}/register/",
        {"email": address, "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert answer.status == 201, answer.body

    verification = mailbox.wait_for(address, VERIFY_SUBJECT, check=delivered)
    match = LINK.search(verification.part("plain"))
    assert match, verification.part("plain")
    token = match.group(1)
    answer = request_json("POST", f"{api}/verify-email/", {"token": token})
    assert answer.status == 200, answer.body
    assert answer.body["user"] == {"email": address, "is_active": True}

    answer = request_json("POST", f"{api}/otp/request/", {"email": address})
    assert answer.status == 200, answer.body
    code_email = mailbox.wait_for(address, CODE_SUBJECT, check=delivered)
    assert code_email.rcpt_tos == (address,)
    code = read_code(code_email)

    answer = request_json(
        "POST", f"{api}/otp/verify/", {"email": address, "code": code}
    )
    assert answer.status == 200, answer.body
    assert set(answer.body) == {"access", "refresh", "user"}, answer.body
    assert answer.body["user"]["email"] == address
    user_id = answer.body["user"]["id"]
    access, refresh = str(answer.body["access"]), str(answer.body["refresh"])

    answer = request_json("GET", f"{api}/me/", access=access)
    assert answer.status == 200, answer.body
    assert answer.body["email"] == address
    assert answer.body["id"] == user_id

    answer = request_json("POST", f"{api}/token/refresh/", {"refresh": refresh})
    assert answer.status == 200, answer.body
    assert answer.body["access"] and answer.body["access"] != access
    # With rotation on, the answer carries the refresh token that is live now.
    refresh = str(answer.body.get("refresh", refresh))
    answer = request_json("GET", f"{api}/me/", access=str(answer.body["access"]))
    assert answer.status == 200, answer.body
    assert answer.body["email"] == address

    answer = request_json("POST", f"{api}/logout/", {"refresh": refresh})
    assert answer.status == 205, answer.body
    answer = request_json("POST", f"{api}/token/refresh/", {"refresh": refresh})
    assert answer.status == 401, answer.body
    assert answer.body["code"] == "token_not_valid", answer.body

    # --- the secrets exist in clear only in the emails ------------------------
    wait_until_settled(
        broker_url=str(celery_app.conf.broker_url), check=celery_worker.assert_alive
    )
    assert [m.subject for m in mailbox.messages()] == [
        VERIFY_SUBJECT,
        WELCOME_SUBJECT,
        CODE_SUBJECT,
    ]
    # The search finds them where they are meant to be.
    assert leaks([("the code email", code_email.part("plain"))], code, token) == [
        "the login code in the code email"
    ]
    assert leaks([("the link", verification.part("plain"))], code, token) == [
        "the verification token in the link"
    ]
    rows = list(OutboxEmail.objects.order_by("pk"))
    assert [row.kind for row in rows] == [
        OutboxEmail.Kind.VERIFY_EMAIL,
        OutboxEmail.Kind.WELCOME,
        OutboxEmail.Kind.LOGIN_CODE,
    ]
    assert {row.status for row in rows} == {OutboxEmail.Status.SENT}
    assert [(t.name, t.args, t.kwargs) for t in published] == [
        (DELIVER_TASK, (row.pk,), {}) for row in rows
    ]
    messages = [(f"task {t.args}", repr((t.body, t.headers))) for t in published]
    assert leaks(messages, code, token) == []

    # (1) The worker's log, read for real, and this process's.
    worker_log = celery_worker.log()
    assert DELIVER_TASK in worker_log
    assert leaks([("the worker's log", worker_log)], code, token) == []
    assert leaks([("the test process's log", debug_logs.text)], code, token) == []

    # (2) Every key and value of the broker's, the cache's (and a result
    # backend's) Redis databases.
    databases = redis_databases()
    assert str(celery_app.conf.broker_url) in databases
    assert str(settings.CACHES["default"]["LOCATION"]) in databases
    backend = str(celery_app.conf.result_backend or "")
    if os.environ.get("KINWISE_TEST_RESULT_BACKEND"):
        assert backend in databases  # the integration env sets one: scan it too
    for url in databases:
        contents = redis_contents(url)
        assert leaks(contents, code, token) == []
        if url == backend:
            # The tasks ignore their results: nothing of theirs is stored at all.
            assert not [t for _, t in contents if "celery-task-meta" in t], contents
        else:
            assert contents, f"{url} is empty: this scan reads the wrong database"
    # They are the databases this run used: kombu's bindings, the rate limits.
    broker = redis_contents(str(celery_app.conf.broker_url))
    assert any(text.startswith("_kombu.binding.") for _, text in broker)
    cache = redis_contents(str(settings.CACHES["default"]["LOCATION"]))
    assert any(":rl:" in text for where, text in cache if ": key " in where)

    # (3) Every column of every row of every table of the test database.
    contents, counts = database_contents()
    tables = {
        model._meta.db_table for model in apps.get_models(include_auto_created=True)
    }
    assert tables <= set(counts), tables - set(counts)
    for model in (LinkToken, LoginCode, OutstandingToken, BlacklistedToken):
        assert counts[model._meta.db_table] > 0, model._meta.db_table
    # simplejwt keeps refresh tokens in clear (recorded before the session's
    # claim is added, so the stored text refreshes nothing): proof the scan reads
    # the values.
    stored = OutstandingToken.objects.values_list("token", flat=True)
    assert any(token_text in text for token_text in stored for _, text in contents)
    assert leaks(contents, code, token) == []
