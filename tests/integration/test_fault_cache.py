"""Security rule 4's last line with the rate-limit cache really unreachable.

The live server's cache (``settings.CACHES``, overridden for the test, so a new
cache object is built in every thread) is a ``redis-server`` of the test's own,
stopped or paused (SIGSTOP: it accepts connections and never answers). By default
the endpoints fail open: they answer as usual and log a warning, and the login code
really goes out. A host that chose ``RATE_LIMIT_FAIL_OPEN = False`` gets 503
``service_unavailable``. Never a 500, and each answer within a couple of seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.core.cache import caches

from kinwise_auth.models import OutboxEmail
from tests.support.accounts import PASSWORD, new_address
from tests.support.brokers import RedisServer, private_redis
from tests.support.http import post_json
from tests.support.smtp import SMTPServer
from tests.support.workers import Worker

if TYPE_CHECKING:
    from pytest_django.fixtures import Settings

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ANSWER_BOUND = 2.0  # seconds; the cache client gives up after 0.5 s per operation
CODE_SUBJECT = "Your app.example.com login code"
FAIL_OPEN_LOG = "rate-limit cache failed"


@pytest.fixture(params=["stopped", "paused"])
def broken_cache(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> Iterator[RedisServer]:
    """The default cache is a private redis-server, then stopped or paused."""
    with private_redis(tmp_path) as server:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": server.url,
                "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
            }
        }
        # The override took: the cache this process builds now is the private one.
        caches["default"].set("kinwise-fault-probe", 1, 30)
        client = server.client()
        try:
            assert client.exists(":1:kinwise-fault-probe")
        finally:
            client.close()
        if request.param == "stopped":
            server.stop()
        else:
            server.pause()
        yield server


def rate_limit_records(
    caplog: pytest.LogCaptureFixture, level: int
) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "kinwise_auth.ratelimit"
        and record.levelno == level
        and FAIL_OPEN_LOG in record.getMessage()
    ]


def test_fails_open_by_default_and_the_code_still_goes_out(
    broken_cache: RedisServer,
    api: str,
    make_user: Callable[..., Any],
    celery_worker: Worker,
    mailbox: SMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kinwise_auth")
    address = new_address("open")
    make_user(address)

    answer = post_json(f"{api}/otp/request/", {"email": address})
    print(f"otp/request/, cache {broken_cache.state}: {answer.elapsed:.3f}s")
    assert answer.status == 200, answer.body
    assert answer.elapsed < ANSWER_BOUND, answer.elapsed
    assert answer.body["expires_in"] == 600
    # Both limits (per IP and per email) were skipped, each with a warning.
    assert len(rate_limit_records(caplog, logging.WARNING)) == 2, caplog.text
    assert "RATE_LIMIT_FAIL_OPEN" in caplog.text

    arrived = mailbox.wait_for(address, CODE_SUBJECT, check=celery_worker.assert_alive)
    assert arrived.rcpt_tos == (address,)

    # Signing in does not turn into a 500 either.
    answer = post_json(
        f"{api}/login/",
        {"email": address, "password": PASSWORD},
    )
    assert answer.status == 200, answer.body
    assert answer.elapsed < ANSWER_BOUND, answer.elapsed
    assert answer.body["access"] and answer.body["refresh"]
    assert not rate_limit_records(caplog, logging.ERROR)


def test_fails_closed_with_503_when_the_host_says_so(
    broken_cache: RedisServer,
    api: str,
    make_user: Callable[..., Any],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "RATE_LIMIT_FAIL_OPEN": False}
    caplog.set_level(logging.WARNING, logger="kinwise_auth")
    address = new_address("closed")
    make_user(address)

    calls = [
        ("otp/request/", {"email": address}),
        ("login/", {"email": address, "password": PASSWORD}),
        ("password/reset/", {"email": address}),
    ]
    for path, payload in calls:
        answer = post_json(f"{api}/{path}", payload)
        print(f"{path} fail-closed, cache {broken_cache.state}: {answer.elapsed:.3f}s")
        assert answer.status == 503, (path, answer.status, answer.body)
        assert answer.elapsed < ANSWER_BOUND, (path, answer.elapsed)
        assert set(answer.body) == {"detail", "code"}, answer.body
        assert answer.body["code"] == "service_unavailable"
        assert answer.body["detail"]
    # Refused before the work: no email was even queued.
    assert not OutboxEmail.objects.exists()
    assert len(rate_limit_records(caplog, logging.ERROR)) == len(calls), caplog.text
    assert not rate_limit_records(caplog, logging.WARNING)
