"""Reliability rule 2 with the broker really down: the outbox waits, the re-drive sends.

The publishing side (this process's Celery app, used by the live server's
``on_commit``) is pointed at a ``redis-server`` of the test's own that it stops,
pauses, or at a socket that accepts and never answers. Every emailing endpoint
must still answer its normal 2xx within the publish bound and leave its outbox row
pending; once the broker is back, the ``kinwise_auth_redrive`` command (a real
subprocess) publishes the rows and a real worker sends each email once, also when
two re-drives run at the same moment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from kinwise_auth import publishing
from kinwise_auth.models import LinkToken, LoginCode, OutboxEmail
from tests.support.accounts import PASSWORD, new_address
from tests.support.brokers import (
    broker_drained,
    hung_listener,
    private_redis,
    publisher_broker,
)
from tests.support.commands import (
    release_barrier,
    republished,
    run_command,
    start_command,
)
from tests.support.delivery import fail_on_failed_delivery
from tests.support.http import post_json
from tests.support.smtp import SMTPServer
from tests.support.waiting import wait_until
from tests.support.workers import Worker, start_worker, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PUBLISH_BOUND = 2.0  # seconds: the bound on an answer while the broker is down
DELIVERY_TIMEOUT = 30.0
Kind = OutboxEmail.Kind
Status = OutboxEmail.Status
SUBJECTS: dict[str, str] = {
    Kind.VERIFY_EMAIL: "Verify your app.example.com account",
    Kind.LOGIN_CODE: "Your app.example.com login code",
    Kind.PASSWORD_RESET: "Reset your app.example.com password",
    Kind.GOODBYE: "Your app.example.com account was deleted",
}
NOT_PUBLISHED = "could not publish outbox email"

Expected = list[tuple[str, str]]  # (recipient, kind) of each outbox row


def call_every_emailing_endpoint(
    api: str, make_user: Callable[..., Any]
) -> tuple[Expected, list[tuple[str, int, float]]]:
    """POST register/, resend-verification/, otp/request/ and password/reset/.

    Each must answer its normal status within :data:`PUBLISH_BOUND`. Returns the
    outbox row each should have left and the timings.
    """
    newcomer = new_address("newcomer")
    pending = new_address("pending")
    signed_up = new_address("otp")
    forgetful = new_address("reset")
    make_user(pending, verified=False)
    make_user(signed_up)
    make_user(forgetful)
    calls: list[tuple[str, dict[str, str], int]] = [
        (
            "register/",
            {"email": newcomer, "password": PASSWORD, "password_confirm": PASSWORD},
            201,
        ),
        ("resend-verification/", {"email": pending}, 200),
        ("otp/request/", {"email": signed_up}, 200),
        ("password/reset/", {"email": forgetful}, 200),
    ]
    timings: list[tuple[str, int, float]] = []
    for path, payload, expected in calls:
        answer = post_json(f"{api}/{path}", payload)
        timings.append((path, answer.status, round(answer.elapsed, 3)))
        assert answer.status == expected, (path, answer.status, answer.body)
        assert answer.elapsed < PUBLISH_BOUND, (
            f"{path} answered in {answer.elapsed:.3f}s with the broker down "
            f"(bound {PUBLISH_BOUND}s); all so far: {timings}"
        )
    print(f"answers with the broker down: {timings}")
    return [
        (newcomer, Kind.VERIFY_EMAIL),
        (pending, Kind.VERIFY_EMAIL),
        (signed_up, Kind.LOGIN_CODE),
        (forgetful, Kind.PASSWORD_RESET),
    ], timings


def assert_all_pending(expected: Expected) -> None:
    rows = list(OutboxEmail.objects.all())
    assert sorted((row.recipient, row.kind) for row in rows) == sorted(expected)
    for row in rows:
        assert row.status == Status.PENDING, (row.recipient, row.status)
        assert row.attempts == 0


def wait_all_sent(worker: Worker, count: int) -> None:
    """Until ``count`` rows are sent; fail at once on a failed row or a dead worker."""
    wait_until(
        lambda: OutboxEmail.objects.filter(status=Status.SENT).count() >= count,
        timeout=DELIVERY_TIMEOUT,
        what=f"{count} outbox rows sent",
        check=fail_on_failed_delivery(worker),
        details=lambda: str(
            list(OutboxEmail.objects.values_list("recipient", "status"))
        ),
    )


def assert_each_sent_once(
    expected: Expected, mailbox: SMTPServer, broker_url: str
) -> None:
    """Each row sent, claimed and minted once; each recipient got exactly one email.

    Counted once the broker holds no message any more (queued or unacked): a
    duplicate publish has then been run too, and would have shown.
    """
    wait_until(
        lambda: broker_drained(broker_url),
        timeout=DELIVERY_TIMEOUT,
        what="the worker draining the broker",
    )
    # Addresses are unique to the test: another test's stray mail is not counted.
    recipients = {recipient for recipient, _ in expected}
    received = [
        (m.rcpt_tos, m.subject)
        for m in mailbox.messages()
        if recipients.intersection(m.rcpt_tos)
    ]
    assert sorted(received) == sorted(
        ((recipient,), SUBJECTS[kind]) for recipient, kind in expected
    ), received
    rows = list(OutboxEmail.objects.all())
    assert sorted((row.recipient, row.kind) for row in rows) == sorted(expected)
    for row in rows:
        assert row.status == Status.SENT, (row.recipient, row.status, row.last_error)
        assert row.attempts == 1, (row.recipient, row.attempts)
        assert row.sent_at is not None
        if row.kind in (Kind.VERIFY_EMAIL, Kind.PASSWORD_RESET):
            assert LinkToken.objects.filter(outbox=row).count() == 1
        if row.kind == Kind.LOGIN_CODE:
            assert LoginCode.objects.filter(outbox=row).count() == 1


@pytest.fixture
def fault_dir(tmp_path: Path) -> Path:
    return tmp_path


def test_broker_down_then_back_the_redrive_sends_each_email_once(
    api: str,
    make_user: Callable[..., Any],
    smtp_server: SMTPServer,
    mailbox: SMTPServer,
    fault_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kinwise_auth")
    with private_redis(fault_dir) as broker:
        broker.stop()  # the broker the web process publishes to goes down
        with publisher_broker(broker.url):
            expected, _ = call_every_emailing_endpoint(api, make_user)
        assert_all_pending(expected)
        assert caplog.text.count(NOT_PUBLISHED) == len(expected)

        broker.start()  # back, on the same port, empty: the publishes were lost
        env = subprocess_env(broker_url=broker.url, smtp_port=smtp_server.port)
        with start_worker(env, log_path=fault_dir / "worker.log") as worker:
            assert broker_drained(broker.url)
            assert_all_pending(expected)  # nothing but the re-drive will send them

            redrive = run_command(
                subprocess_env(broker_url=broker.url, auth={"OUTBOX_REDRIVE_AFTER": 0}),
                "kinwise_auth_redrive",
            )
            assert republished(redrive) == len(expected), redrive.stdout

            wait_all_sent(worker, len(expected))
            assert_each_sent_once(expected, mailbox, broker.url)
            assert publishing.DELIVER_TASK in worker.log()


def make_waiting_rows(make_user: Callable[..., Any], per_kind: int) -> Expected:
    """Outbox rows left pending ten minutes ago (their publish lost), four kinds."""
    expected: Expected = []
    for _ in range(per_kind):
        pending = new_address("pending")
        verified = new_address("verified")
        goodbye = new_address("goodbye")
        pending_user = make_user(pending, verified=False)
        verified_user = make_user(verified)
        for user, recipient, kind in (
            (pending_user, pending, Kind.VERIFY_EMAIL),
            (verified_user, verified, Kind.LOGIN_CODE),
            (verified_user, verified, Kind.PASSWORD_RESET),
            (None, goodbye, Kind.GOODBYE),
        ):
            OutboxEmail.objects.create(kind=kind, user=user, recipient=recipient)
            expected.append((recipient, kind))
    OutboxEmail.objects.update(available_at=timezone.now() - timedelta(minutes=10))
    return expected


@pytest.mark.parametrize(
    "redrive_after",
    [
        # A re-published row leaves the due window: the two publish it once in all.
        pytest.param(60, id="redrive_after_60s"),
        # Every pending row is due at once: both may publish it; still sent once.
        pytest.param(0, id="redrive_after_0"),
    ],
)
def test_two_redrives_at_once_send_each_email_once(
    redrive_after: int,
    live_server: Any,
    make_user: Callable[..., Any],
    smtp_server: SMTPServer,
    mailbox: SMTPServer,
    fault_dir: Path,
) -> None:
    expected = make_waiting_rows(make_user, per_kind=5)
    assert_all_pending(expected)

    with private_redis(fault_dir) as broker:
        worker_env = subprocess_env(broker_url=broker.url, smtp_port=smtp_server.port)
        redrive_env = subprocess_env(
            broker_url=broker.url, auth={"OUTBOX_REDRIVE_AFTER": redrive_after}
        )
        # Four threads: two messages for one row may run at the same moment.
        with start_worker(
            worker_env,
            log_path=fault_dir / "worker.log",
            pool="threads",
            concurrency=4,
        ) as worker:
            barrier = fault_dir / "barrier"
            barrier.mkdir()
            commands = [
                start_command(redrive_env, "kinwise_auth_redrive", barrier=barrier)
                for _ in range(2)
            ]
            try:
                release_barrier(barrier, commands)  # both connected, then "go"
                runs = [command.wait() for command in commands]
            finally:
                for command in commands:
                    command.kill()
            for run in runs:
                assert run.returncode == 0, (run.stdout, run.stderr[-4000:])
            counts = [republished(run) for run in runs]
            print(
                f"redrive_after={redrive_after}s: the re-drives published {counts}, "
                f"took {[round(run.elapsed, 2) for run in runs]}s"
            )
            if redrive_after:
                assert sum(counts) == len(expected), counts
            else:
                assert sum(counts) >= len(expected), counts

            wait_all_sent(worker, len(expected))
            assert_each_sent_once(expected, mailbox, broker.url)


@pytest.fixture(params=["listener", "paused_redis"])
def hung_broker_url(request: pytest.FixtureRequest, fault_dir: Path) -> Iterator[str]:
    """A broker URL whose server accepts the connection and never answers."""
    with ExitStack() as stack:
        if request.param == "listener":
            port = stack.enter_context(hung_listener())
            yield f"redis://127.0.0.1:{port}/0"
        else:
            server = stack.enter_context(private_redis(fault_dir))
            server.pause()  # SIGSTOP: connections complete, nothing answers
            yield server.url


def test_a_hung_broker_does_not_hold_the_answer(
    hung_broker_url: str,
    api: str,
    make_user: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kinwise_auth")
    with publisher_broker(hung_broker_url):
        expected, _ = call_every_emailing_endpoint(api, make_user)
    assert_all_pending(expected)
    assert caplog.text.count(NOT_PUBLISHED) == len(expected)


def test_a_restarted_broker_takes_the_next_publish(fault_dir: Path) -> None:
    """The publishing connection is kept between emails: once the broker restarts,
    the next publish reconnects within the bound instead of failing on the old
    socket."""
    row = OutboxEmail.objects.create(
        kind=Kind.LOGIN_CODE, recipient=new_address("restart")
    )
    with private_redis(fault_dir) as broker, publisher_broker(broker.url):
        assert publishing.publish(row.pk)
        assert not broker_drained(broker.url)
        kept = publishing._publisher.entry[1]

        broker.stop()
        broker.start()  # the same port, empty: the kept socket is dead
        assert broker_drained(broker.url)

        started = time.monotonic()
        assert publishing.publish(row.pk)
        assert time.monotonic() - started < PUBLISH_BOUND
        assert not broker_drained(broker.url)
        assert publishing._publisher.entry[1] is kept  # reconnected, not replaced
