"""Recovery in seconds, with real processes and the package's default timings.

A real ``redis-server`` of the test's own is the broker; a prefork ``celery
worker`` sends to an SMTP server in this process; a real ``celery beat`` runs the
re-drive every ten seconds, as the example project does. Nothing is shortened:
the claim follows from ``EMAIL_TIMEOUT`` (10 s, so 45 s), ``OUTBOX_REDRIVE_AFTER``
is its minute, the visibility timeout its hour.

- Broker stopped, requests made, broker started again on the same port: each
  email goes out within 30 s of the broker's return, exactly once.
- Worker SIGKILLed (its whole process group) while the SMTP server holds its
  message: the email goes out within two minutes, at most twice (the killed
  worker's message, aborted mid-DATA, is never delivered here; a server that had
  queued it before the kill would deliver both).

Each is repeated three times in one run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from kinwise_auth.models import OutboxEmail
from tests.support.accounts import PASSWORD, new_address
from tests.support.brokers import private_redis, publisher_broker
from tests.support.delivery import fail_on_failed_delivery
from tests.support.http import post_json
from tests.support.processes import LoggedProcess
from tests.support.smtp import SMTPServer
from tests.support.waiting import wait_until
from tests.support.workers import Workers, start_beat, start_worker, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROUNDS = 3
REDRIVE_EVERY = "10"  # seconds: the example project's beat interval
BACK_WITHIN = timedelta(seconds=30)
KILLED_WITHIN = timedelta(minutes=2)
SMTP_HOLD = 60.0  # the SMTP server holds DATA this long: the kill comes first
Status = OutboxEmail.Status


@contextmanager
def beat(env: dict[str, str], log_dir: Path) -> Iterator[LoggedProcess]:
    with start_beat(
        {**env, "KINWISE_TEST_REDRIVE_EVERY": REDRIVE_EVERY},
        log_path=log_dir / "beat.log",
        schedule_dir=log_dir,
    ) as process:
        yield process


def request_emails(api: str, make_user: Callable[..., Any]) -> list[str]:
    """A registration and a login code: two outbox rows, two recipients."""
    newcomer, member = new_address("newcomer"), new_address("member")
    make_user(member)
    body = {"email": newcomer, "password": PASSWORD, "password_confirm": PASSWORD}
    assert post_json(f"{api}/register/", body).status == 201
    assert post_json(f"{api}/otp/request/", {"email": member}).status == 200
    return [newcomer, member]


def broker_outage(
    api: str,
    make_user: Callable[..., Any],
    broker: Any,
    mailbox: SMTPServer,
    worker: LoggedProcess,
    beat_process: LoggedProcess,
) -> list[timedelta]:
    """Stop the broker, request two emails, start it again; how long after its
    return each email went out."""
    broker.stop()
    recipients = request_emails(api, make_user)
    query = OutboxEmail.objects.filter(recipient__in=recipients)
    assert {row.status for row in query.all()} == {Status.PENDING}

    broker.start()
    back = timezone.now()
    wait_until(
        lambda: query.filter(status=Status.SENT).count() == len(recipients),
        timeout=BACK_WITHIN.total_seconds() + 15,
        what="both emails sent after the broker's return",
        check=fail_on_failed_delivery(worker),
        details=lambda: f"{worker.log_tail()}\n{beat_process.log_tail()}",
    )
    for recipient in recipients:
        assert len(mailbox.messages(recipient)) == 1, recipient
    rows = list(query.all())
    assert all(row.attempts == 1 for row in rows), [
        (row.recipient, row.attempts, row.last_error) for row in rows
    ]
    return [row.sent_at - back for row in rows if row.sent_at]


def test_emails_waiting_for_the_broker_go_out_within_30s_of_its_return(
    api: str,
    make_user: Callable[..., Any],
    smtp_server: SMTPServer,
    mailbox: SMTPServer,
    tmp_path: Path,
) -> None:
    with private_redis(tmp_path) as broker:
        env = subprocess_env(broker_url=broker.url, smtp_port=smtp_server.port)
        with (
            start_worker(env, log_path=tmp_path / "worker.log") as worker,
            beat(env, tmp_path) as beat_process,
            publisher_broker(broker.url),
        ):
            for round_ in range(ROUNDS):
                waited = broker_outage(
                    api, make_user, broker, mailbox, worker, beat_process
                )
                print(f"round {round_}: sent {waited} after the broker's return")
                assert max(waited) <= BACK_WITHIN, (round_, waited)


def worker_killed_mid_send(
    api: str,
    smtp: SMTPServer,
    workers: Workers,
    make_user: Callable[..., Any],
    beat_process: LoggedProcess,
) -> timedelta:
    """Kill a worker while the SMTP server holds its message; how long after the
    kill the email went out, through a second worker."""
    member = new_address("killed")
    make_user(member)
    smtp.set("slow", delay=SMTP_HOLD)
    first = workers.start(smtp.port, {})
    assert post_json(f"{api}/otp/request/", {"email": member}).status == 200
    wait_until(
        lambda: [e for e in smtp.events(member) if e.outcome == "delaying"],
        timeout=15.0,
        what="the worker inside send(): the SMTP server holding DATA",
        check=first.assert_alive,
    )

    first.kill()
    killed = timezone.now()
    smtp.set("accept")
    second = workers.start(smtp.port, {})
    row = OutboxEmail.objects.get(recipient=member)
    wait_until(
        lambda: OutboxEmail.objects.get(pk=row.pk).status == Status.SENT,
        timeout=KILLED_WITHIN.total_seconds() + 15,
        what="the email sent by the second worker",
        check=fail_on_failed_delivery(second),
        details=lambda: f"{workers.logs()}\n{beat_process.log_tail()}",
    )
    row.refresh_from_db()
    assert 1 <= len(smtp.messages(member)) <= 2
    assert row.attempts == 2  # the killed worker's claim, then the re-drive's
    second.stop()
    assert row.sent_at is not None
    return row.sent_at - killed


def test_an_email_whose_worker_was_killed_goes_out_within_two_minutes(
    api: str,
    smtp: SMTPServer,
    workers: Workers,
    make_user: Callable[..., Any],
    tmp_path: Path,
) -> None:
    with beat(workers.env(smtp.port, {}), tmp_path) as beat_process:
        for round_ in range(ROUNDS):
            waited = worker_killed_mid_send(api, smtp, workers, make_user, beat_process)
            print(f"round {round_}: sent {waited} after the kill")
            assert waited <= KILLED_WITHIN, (round_, waited)
