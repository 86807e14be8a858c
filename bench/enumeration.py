"""Latency of the enumeration-safe endpoints: a known address beside an unknown one.

Run with ``make bench`` (or ``python bench/enumeration.py`` from the repository
root with the package and its test requirements installed). Each endpoint is
called alternately for an existing account and an unknown address through
Django's full request stack in this process, on a throwaway database; it prints
the median and p90 of each path and their ratio. The goal is medians within 10 %.
``email/change/`` is called by a signed-in account asking to move to an address
another account holds, or to a free one.
Emails are published to an in-memory broker and not delivered, as in a web
process; rate limits are off. Set ``KINWISE_TEST_DB=postgres`` to use PostgreSQL,
``BENCH_HASHER=default`` for Django's PBKDF2 instead of the tests' fast hasher, and
``BENCH_ROUNDS`` for the number of calls per path.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("KINWISE_TEST_BROKER_URL", "memory://")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from bench.common import PASSWORD, Accounts  # noqa: E402
from bench.endpoints import API, BY_NAME, Input  # noqa: E402
from kinwise_auth.services import RequestMeta  # noqa: E402
from kinwise_auth.services.sessions import open_session  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "300"))
WRONG_PASSWORD = "wrong-password-1"
# (catalogue name, how the address and password fill its body)
ENDPOINTS: list[tuple[str, str]] = [
    ("otp/request/", "email"),
    ("resend-verification/", "email"),
    ("password/reset/", "email"),
    ("register/", "register"),
    ("login/", "login"),
    # A pending account's wrong password: one hash, as for an unknown address
    # (the email_not_verified check reuses the backend's).
    ("login/", "login-pending"),
    # Signed in; the new address held by another account, or free.
    ("email/change/", "email-change"),
]


def body(path: str, kind: str, email: str) -> dict[str, str]:
    """``path``'s body from the catalogue: ``email`` as the address it asks
    about (the new address of an email change), a wrong password to log in."""
    if kind == "email-change":
        given = Input("", PASSWORD, new_email=email)
    else:
        given = Input(email, WRONG_PASSWORD if kind.startswith("login") else PASSWORD)
    return BY_NAME[path].body(given)


def sign_in(client: APIClient, user: Any) -> None:
    """A fresh access token for ``user`` (outlives any run), of a session of its
    own, outside the timing. ``None`` leaves the client anonymous."""
    if user is not None:
        access = open_session(user, method="password", meta=RequestMeta())["access"]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")


def timed(client: APIClient, url: str, data: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.post(url, data, format="json")
    elapsed = time.perf_counter() - started
    assert response.status_code < 500, response.content
    return elapsed


def main() -> None:
    setup_test_environment()
    settings.RATELIMIT_ENABLE = False
    if os.environ.get("BENCH_HASHER") == "default":
        # Django's own default (PBKDF2): the figures a production host sees.
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        acc = Accounts()  # after the hasher is chosen
        acc.user("known@example.com")
        acc.user("pending@example.com", verified=False)
        requester = acc.user("requester@example.com")
        print(
            f"{'endpoint':24} {'known p50':>10} {'unknown p50':>12} {'ratio':>7}"
            f" {'known p90':>10} {'unknown p90':>12}"
        )
        for path, kind in ENDPOINTS:
            url = API + BY_NAME[path].path
            client = APIClient()
            known: list[float] = []
            unknown: list[float] = []
            existing = (
                "pending@example.com"
                if kind == "login-pending"
                else "known@example.com"
            )
            for n in range(20):  # warm-up
                sign_in(client, requester if kind == "email-change" else None)
                timed(client, url, body(path, kind, existing))
                timed(client, url, body(path, kind, f"warm{n}@example.com"))
            for n in range(ROUNDS):
                sign_in(client, requester if kind == "email-change" else None)
                known.append(timed(client, url, body(path, kind, existing)))
                unknown.append(
                    timed(client, url, body(path, kind, f"{kind}{n}@nowhere.example"))
                )
            k50, u50 = statistics.median(known), statistics.median(unknown)
            k90 = statistics.quantiles(known, n=10)[-1]
            u90 = statistics.quantiles(unknown, n=10)[-1]
            label = path + (" (pending)" if kind == "login-pending" else "")
            print(
                f"{label:24} {k50 * 1e3:8.2f}ms {u50 * 1e3:10.2f}ms {u50 / k50:7.3f}"
                f" {k90 * 1e3:8.2f}ms {u90 * 1e3:10.2f}ms"
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(
        f"\n{ROUNDS} rounds per path, {connection.vendor}, "
        f"hasher {settings.PASSWORD_HASHERS[0].rsplit('.', 1)[-1]}, "
        f"{get_user_model().__name__}"
    )


if __name__ == "__main__":
    main()
