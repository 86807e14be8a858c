"""The email flow through RabbitMQ (issue 7, "Other brokers").

The publishing side (this process's Celery app) and a ``celery worker`` subprocess
both use RabbitMQ at 127.0.0.1:5672, on a queue unique to the test (created by the
first publish or the worker, deleted afterwards), so parallel runs and other users
of the shared broker do not take each other's messages. The package's bounded
publish sets py-amqp's ``read_timeout``/``write_timeout``: this proves that path
delivers, and that a RabbitMQ that is down or hung still answers within the bound.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

from kinwise_auth.models import EmailIdentity, OutboxEmail
from kinwise_auth.normalization import normalize_email
from kinwise_auth.publishing import DELIVER_TASK
from tests.celery_app import app as celery_app
from tests.support.accounts import PASSWORD, new_address
from tests.support.brokers import hung_listener, publisher_broker
from tests.support.gate import unavailable
from tests.support.http import post_json
from tests.support.processes import free_port
from tests.support.smtp import SMTPServer
from tests.support.waiting import wait_until
from tests.support.workers import start_worker, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
PUBLISH_BOUND = 2.0
VERIFY_SUBJECT = "Verify your app.example.com account"
WELCOME_SUBJECT = "Welcome to app.example.com!"
LINK = re.compile(r"https://app\.example\.com/verify-email\?token=([A-Za-z0-9_-]+)")


@contextmanager
def default_queue(name: str) -> Iterator[None]:
    """Route this process's publishes to queue ``name`` (read at publish time)."""
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = name
    try:
        yield
    finally:
        celery_app.conf.task_default_queue = previous
        celery_app.amqp.queues.pop(name, None)


@pytest.fixture
def rabbitmq_queue() -> Iterator[str]:
    """A queue name of this test's own on RabbitMQ; the queue is deleted after."""
    try:
        with Connection(AMQP_URL, connect_timeout=3.0) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        unavailable("RabbitMQ test", f"RabbitMQ at {AMQP_URL} is unreachable: {exc!r}")
    name = f"kinwise-it-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with Connection(AMQP_URL, connect_timeout=3.0) as conn:
            channel = conn.default_channel
            Queue(name, Exchange(name, "direct"), name).bind(channel).delete()
            Exchange(name, "direct").bind(channel).delete()


def test_register_verify_and_welcome_through_rabbitmq(
    rabbitmq_queue: str,
    api: str,
    smtp_server: SMTPServer,
    mailbox: SMTPServer,
    tmp_path: Path,
) -> None:
    env = subprocess_env(broker_url=AMQP_URL, smtp_port=smtp_server.port)
    address = new_address("rabbit")
    with ExitStack() as stack:
        worker = stack.enter_context(
            start_worker(env, log_path=tmp_path / "worker.log", queue=rabbitmq_queue)
        )
        stack.enter_context(publisher_broker(AMQP_URL))
        stack.enter_context(default_queue(rabbitmq_queue))

        answer = post_json(
            f"{api}/register/",
            {"email": address, "password": PASSWORD, "password_confirm": PASSWORD},
        )
        assert answer.status == 201, answer.body
        assert answer.elapsed < PUBLISH_BOUND, answer.elapsed

        verification = mailbox.wait_for(
            address, VERIFY_SUBJECT, check=worker.assert_alive
        )
        match = LINK.search(verification.part("plain"))
        assert match, verification.part("plain")
        answer = post_json(f"{api}/verify-email/", {"token": match.group(1)})
        assert answer.status == 200, answer.body
        assert answer.body["user"] == {"email": address, "is_active": True}

        welcome = mailbox.wait_for(address, WELCOME_SUBJECT, check=worker.assert_alive)
        assert welcome.rcpt_tos == (address,)

        wait_until(
            lambda: (
                not OutboxEmail.objects.exclude(status=OutboxEmail.Status.SENT).exists()
            ),
            timeout=20.0,
            what="every outbox row sent",
            check=worker.assert_alive,
        )
        log = worker.log()

    identity = EmailIdentity.objects.select_related("user").get(
        email_normalized=normalize_email(address)
    )
    assert identity.user.is_active and identity.verified_at is not None
    rows = list(OutboxEmail.objects.order_by("created_at", "pk"))
    assert [(row.kind, row.attempts) for row in rows] == [
        (OutboxEmail.Kind.VERIFY_EMAIL, 1),
        (OutboxEmail.Kind.WELCOME, 1),
    ]
    assert [m.subject for m in mailbox.messages(address)] == [
        VERIFY_SUBJECT,
        WELCOME_SUBJECT,
    ]
    # The worker ran on RabbitMQ, from the test's queue, and ran both deliveries.
    assert "amqp://guest:**@127.0.0.1:5672//" in log
    assert rabbitmq_queue in log
    assert log.count(f"{DELIVER_TASK}[") >= 2


@pytest.fixture(params=["closed_port", "hung_listener"])
def dead_amqp_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An AMQP URL nothing answers on: refused, or accepted and never answered."""
    if request.param == "closed_port":
        yield f"amqp://guest:guest@127.0.0.1:{free_port()}//"
        return
    with hung_listener() as port:
        yield f"amqp://guest:guest@127.0.0.1:{port}//"


def test_a_dead_rabbitmq_does_not_hold_the_answer(
    dead_amqp_url: str,
    api: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kinwise_auth")
    address = new_address("rabbit-down")
    with publisher_broker(dead_amqp_url):
        answer = post_json(
            f"{api}/register/",
            {"email": address, "password": PASSWORD, "password_confirm": PASSWORD},
        )
    print(f"register/ with RabbitMQ {dead_amqp_url}: {answer.elapsed:.3f}s")
    assert answer.status == 201, answer.body
    assert answer.elapsed < PUBLISH_BOUND, answer.elapsed
    row = OutboxEmail.objects.get(recipient=address)
    assert row.status == OutboxEmail.Status.PENDING
    assert "could not publish outbox email" in caplog.text
