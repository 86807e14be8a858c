"""Reliability rule 4: a worker killed mid-send does not lose the email.

A real ``celery worker`` (prefork: main process and one pool child, in a process
group of its own) takes a login-code email while the SMTP server this test runs
sleeps before answering ``DATA``; the test then SIGKILLs the whole group, so neither
late acknowledgement's ack nor ``task_reject_on_worker_lost``'s reject is ever
sent: the message stays unacknowledged in Redis and the outbox row stays claimed
(``sending``), with a code minted that nobody received.

A new worker, whose broker visibility timeout is short, gets the message back from
Redis, finds the claim expired (``OUTBOX_CLAIM_TIMEOUT`` is short too) and sends the
email with a fresh code that supersedes the first. Should the redelivered task find
the claim still live and leave it, the re-drive command (run once the claim has
expired) publishes the row again. Either way the user gets one email whose code
signs in, and exactly one code is live.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from kinwise_auth.models import LoginCode, OutboxEmail
from tests.support.accounts import new_address
from tests.support.brokers import unacked
from tests.support.commands import run_command
from tests.support.delivery import wait_until_settled
from tests.support.http import post_json
from tests.support.smtp import SMTPServer
from tests.support.waiting import wait_until
from tests.support.workers import Workers

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CODE_SUBJECT = "Your app.example.com login code"
# login_code.txt puts the code alone on an indented line (lines end in CRLF here).
CODE_LINE = re.compile(r"^[ \t]+([0-9]{6})[ \t]*\r?$", re.MULTILINE)
RECEIVED = re.compile(r"Task kinwise_auth\.tasks\.deliver\[([0-9a-f-]{36})\] received")
SMTP_DELAY = 5.0  # the killed worker is inside send() for this long
CLAIM_TIMEOUT = 3  # seconds: OUTBOX_CLAIM_TIMEOUT of both workers
VISIBILITY_TIMEOUT = 3  # seconds: the broker's, for the new worker
REDELIVERY_GRACE = 5.0  # seconds the redelivered task gets before the re-drive
RECOVERY_TIMEOUT = 30.0
Status = OutboxEmail.Status


def read_code(message: Any) -> str:
    codes = CODE_LINE.findall(message.part("plain"))
    assert len(codes) == 1, message.part("plain")
    return str(codes[0])


def test_worker_killed_mid_send_loses_no_email(
    api: str,
    smtp: SMTPServer,
    workers: Workers,
    make_user: Callable[..., Any],
) -> None:
    address = new_address("killed")
    user = make_user(address)
    auth = {"OUTBOX_CLAIM_TIMEOUT": CLAIM_TIMEOUT, "OUTBOX_REDRIVE_AFTER": 0}
    smtp.set("slow", delay=SMTP_DELAY)
    first = workers.start(smtp.port, auth)

    def details() -> str:
        return f"{smtp.describe()}\n{workers.logs()}"

    assert len(first.processes()) >= 2, first.processes()  # main and pool child

    answer = post_json(f"{api}/otp/request/", {"email": address})

    assert answer.status == 200, answer.body
    row = OutboxEmail.objects.get(recipient=address, kind=OutboxEmail.Kind.LOGIN_CODE)
    wait_until(
        lambda: [e for e in smtp.events(address) if e.outcome == "delaying"],
        timeout=15.0,
        what="the worker inside send(): the SMTP server delaying DATA",
        check=first.assert_alive,
        details=details,
    )
    row.refresh_from_db()
    assert row.status == Status.SENDING
    assert row.attempts == 1
    minted = list(LoginCode.objects.filter(user=user).values_list("pk", flat=True))
    assert len(minted) == 1  # the code the killed worker was sending
    (first_task,) = RECEIVED.findall(first.log())

    first.kill()

    # The server saw the client go mid-DATA and delivered nothing.
    wait_until(
        lambda: [e for e in smtp.events(address) if e.outcome == "aborted"],
        timeout=5.0,
        what="the SMTP server seeing the killed worker's connection close",
        details=details,
    )
    assert smtp.messages(address) == []
    row.refresh_from_db()
    assert row.status == Status.SENDING
    # Late acknowledgement: the message is still Redis's, unacknowledged.
    pending = unacked(workers.broker_url)
    assert len(pending) == 1, pending

    smtp.set("accept")
    # Redis hands an unacked message back once it is older than the visibility
    # timeout, and a worker looks when it starts (then every ~100 s): start the new
    # worker once the message is old enough, and the first one's claim expired.
    ripe = max(pending.values()) + VISIBILITY_TIMEOUT + 0.5
    time.sleep(max(0.0, ripe - time.time()))
    second = workers.start(smtp.port, auth, visibility_timeout=VISIBILITY_TIMEOUT)
    ready = time.monotonic()

    redrives: list[str] = []
    redrive_env = workers.env(
        smtp.port, {"OUTBOX_REDRIVE_AFTER": 0, "OUTBOX_CLAIM_TIMEOUT": CLAIM_TIMEOUT}
    )
    while True:
        row.refresh_from_db()
        if row.status == Status.SENT:
            break
        assert row.status != Status.FAILED, row.last_error
        second.assert_alive()
        if time.monotonic() - ready > RECOVERY_TIMEOUT:
            pytest.fail(
                f"row {row.pk} still {row.status} {RECOVERY_TIMEOUT:.0f}s after the "
                f"new worker started; re-drives: {redrives}\n{details()}"
            )
        released = row.status == Status.PENDING or (
            row.claimed_until is not None and row.claimed_until < timezone.now()
        )
        if released and time.monotonic() - ready > REDELIVERY_GRACE:
            redrives.append(run_command(redrive_env, "kinwise_auth_redrive").output)
        time.sleep(1.0 if released else 0.1)

    message = smtp.wait_for(
        address,
        CODE_SUBJECT,
        timeout=10.0,
        check=second.assert_alive,
        details=workers.logs,
    )
    wait_until_settled(
        broker_url=workers.broker_url, check=second.assert_alive, details=details
    )
    assert len(smtp.messages(address)) == 1, details()
    row.refresh_from_db()
    assert row.status == Status.SENT
    assert row.attempts >= 2
    # The new worker ran the very message the killed one held (late ack and the
    # short visibility timeout), not only a copy published by the re-drive.
    assert first_task in RECEIVED.findall(second.log()), (redrives, details())
    # The killed worker's code is superseded; the emailed one is the live one.
    assert LoginCode.objects.get(pk=minted[0]).superseded_at is not None
    (live,) = LoginCode.objects.filter(user=user).live()
    assert live.pk not in minted
    assert live.outbox_id == row.pk
    assert LoginCode.objects.filter(user=user).count() == row.attempts  # one a claim

    # A re-drive now finds nothing to send: the row is sent, no second copy.
    redrive = run_command(redrive_env, "kinwise_auth_redrive")
    assert "Re-published 0 outbox email(s)." in redrive.output
    wait_until_settled(
        broker_url=workers.broker_url, check=second.assert_alive, details=details
    )
    assert len(smtp.messages(address)) == 1, details()

    answer = post_json(
        f"{api}/otp/verify/",
        {"email": address, "code": read_code(message)},
    )

    assert answer.status == 200, answer.body
    assert answer.body["user"]["email"] == address
