"""The outbox seam: queue on commit, bounded publish, claim, mint, send, retry."""

from __future__ import annotations

import logging
import smtplib
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from kinwise_auth import emails, outbox, tasks
from kinwise_auth.models import AuthEvent, LinkToken, LoginCode, OutboxEmail
from kinwise_auth.services import RequestMeta, register_user

from . import celery_app
from .conftest import PASSWORD, register_body

pytestmark = pytest.mark.django_db(transaction=True)

Status = OutboxEmail.Status


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker_down(broker: Any) -> Iterator[Any]:
    """The broker URL points at a closed loopback port."""
    app = celery_app.app
    previous = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{closed_port()}/0"
    try:
        yield broker
    finally:
        app.conf.broker_url = previous


def register(email: str = "new@example.com") -> Any:
    return register_user(email=email, password=PASSWORD, meta=RequestMeta())


def test_only_the_row_id_crosses_the_broker(api: Any, broker: Any) -> None:
    api.post("/api/v1/auth/register/", register_body(), format="json")

    (message,) = broker
    row = OutboxEmail.objects.get()
    assert message["headers"]["task"] == "kinwise_auth.tasks.deliver"
    assert list(message["body"][0]) == [row.pk]
    assert message["body"][1] == {}
    assert message["headers"]["argsrepr"] == f"({row.pk},)"
    assert row.status == Status.PENDING
    assert row.context == {}
    assert not LinkToken.objects.exists()  # minted by the task, not the request

    broker.drain()

    row.refresh_from_db()
    assert row.status == Status.SENT
    assert row.attempts == 1
    assert row.sent_at is not None
    assert LinkToken.objects.get().outbox_id == row.pk
    assert len(mail.outbox) == 1


def test_nothing_is_published_before_commit(broker: Any) -> None:
    with transaction.atomic():
        register()
        assert broker == []
    assert len(broker) == 1


def test_a_rolled_back_registration_sends_nothing(broker: Any) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        register()
        raise RuntimeError("the host's transaction fails")

    assert broker == []
    assert not OutboxEmail.objects.exists()
    assert mail.outbox == []


def test_broker_down_answers_in_bounded_time_and_keeps_the_row(
    api: Any, broker_down: Any, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    response = api.post("/api/v1/auth/register/", register_body(), format="json")
    elapsed = time.monotonic() - started

    assert response.status_code == 201
    assert elapsed < 5  # wide margin: the publish is bounded near one second
    row = OutboxEmail.objects.get()
    assert row.status == Status.PENDING
    assert "could not publish outbox email" in caplog.text


def test_the_redrive_sends_what_waited_once_the_broker_is_back(
    api: Any, broker_down: Any
) -> None:
    api.post("/api/v1/auth/register/", register_body(), format="json")
    assert OutboxEmail.objects.get().status == Status.PENDING
    broker_down.clear()  # the publish signal fired, the broker took nothing
    celery_app.app.conf.broker_url = "memory://"
    # Older than OUTBOX_REDRIVE_AFTER (a minute): the re-drive takes it.
    OutboxEmail.objects.update(available_at=timezone.now() - timedelta(minutes=2))

    assert tasks.requeue_unsent.apply().get() == 1
    assert outbox.requeue_unsent() == 0  # moved out of the due window

    broker_down.drain()
    assert OutboxEmail.objects.get().status == Status.SENT
    assert len(mail.outbox) == 1


def test_a_failed_publish_makes_the_row_due_at_once(api: Any, broker_down: Any) -> None:
    api.post("/api/v1/auth/register/", register_body(), format="json")
    broker_down.clear()
    celery_app.app.conf.broker_url = "memory://"

    # No waiting out OUTBOX_REDRIVE_AFTER: the request knew its publish failed.
    assert outbox.requeue_unsent() == 1

    broker_down.drain()
    assert OutboxEmail.objects.get().status == Status.SENT
    assert len(mail.outbox) == 1


def test_a_failed_publish_logs_one_line_and_keeps_the_traceback_for_debug(
    api: Any, broker_down: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kinwise_auth.publishing")
    api.post("/api/v1/auth/register/", register_body(), format="json")
    row = OutboxEmail.objects.get()

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert f"outbox email {row.pk} (" in line and "\n" not in line
    assert warnings[0].exc_info is None
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(r.exc_info for r in debug)


def test_the_redrive_leaves_fresh_rows_to_their_own_publish(broker: Any) -> None:
    register()

    assert outbox.requeue_unsent() == 0
    assert len(broker) == 1


def test_a_row_is_sent_once_even_if_delivered_twice(broker: Any) -> None:
    register()
    row = OutboxEmail.objects.get()

    assert emails.send(row.pk) == Status.SENT
    assert emails.send(row.pk) is None
    assert len(mail.outbox) == 1


def test_a_worker_that_stalled_past_its_claim_neither_mints_nor_sends(
    api: Any, make_user: Any, broker: Any
) -> None:
    make_user("alice@example.com")
    api.post("/api/v1/auth/otp/request/", {"email": "alice@example.com"}, format="json")
    row = OutboxEmail.objects.get()
    stalled = outbox.claim(row.pk)  # the first worker, then a long pause
    OutboxEmail.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert emails.send(row.pk) == Status.SENT  # a second worker takes it over
    live = LoginCode.objects.live().get()

    assert stalled is not None
    assert emails._send_claimed(stalled) is None  # the first one wakes up

    assert len(mail.outbox) == 1
    assert LoginCode.objects.live().get() == live  # its code still signs in


def test_a_live_claim_keeps_other_workers_off(broker: Any) -> None:
    register()
    row = OutboxEmail.objects.get()
    outbox.claim(row.pk)

    assert emails.send(row.pk) is None
    assert mail.outbox == []


def test_an_expired_claim_is_redriven_with_a_fresh_token(
    broker: Any, settings: Any
) -> None:
    """A worker lost mid-send: the next run mints a token superseding the first."""
    register()
    row = OutboxEmail.objects.get()
    broker.drain()
    first = LinkToken.objects.get()
    # As if that worker died after minting: the row is claimed, the claim expired.
    OutboxEmail.objects.filter(pk=row.pk).update(
        status=Status.SENDING, claimed_until=row.created_at
    )

    assert outbox.requeue_unsent() == 1
    broker.drain()

    first.refresh_from_db()
    assert first.superseded_at is not None
    assert LinkToken.objects.filter(superseded_at=None).count() == 1
    assert len(mail.outbox) == 2


class FlakySMTP:
    """An email backend that fails ``failures`` times, then delivers."""

    failures = 0
    calls = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send_messages(self, messages: list[Any]) -> int:
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")
        mail.outbox.extend(messages)
        return len(messages)


@pytest.fixture
def flaky(settings: Any) -> type[FlakySMTP]:
    settings.EMAIL_BACKEND = f"{__name__}.FlakySMTP"
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "DELIVERY_RETRY_BACKOFF": 0,  # eager retries run at once
        "DELIVERY_MAX_RETRIES": 2,
    }
    FlakySMTP.calls = 0
    return FlakySMTP


def test_smtp_errors_are_retried_until_sent(flaky: type[FlakySMTP]) -> None:
    flaky.failures = 2
    register()

    row = OutboxEmail.objects.get()
    assert row.status == Status.SENT
    assert row.attempts == 3
    assert flaky.calls == 3
    assert len(mail.outbox) == 1
    # Each attempt minted a token superseding the last: only the sent one lives.
    assert LinkToken.objects.filter(superseded_at=None).count() == 1


def test_when_retries_run_out_the_failure_is_recorded(
    flaky: type[FlakySMTP], caplog: pytest.LogCaptureFixture
) -> None:
    flaky.failures = 10
    register()

    row = OutboxEmail.objects.get()
    assert row.status == Status.FAILED
    assert "SMTPServerDisconnected" in row.last_error
    event = AuthEvent.objects.get(event_type="email_delivery_failed")
    assert event.extra["outbox_id"] == row.pk
    assert "failed" in caplog.text


@override_settings(
    KINWISE_AUTH={"FRONTEND_URL": "https://app.example.com", "PUBLISH_TIMEOUT": 0.5}
)
def test_a_broken_template_fails_the_row_without_retrying(
    broker: Any, settings: Any, tmp_path: Any
) -> None:
    (tmp_path / "kinwise_auth" / "email").mkdir(parents=True)
    (tmp_path / "kinwise_auth" / "email" / "verify_email.txt").write_text(
        "{% if %}broken{% endif %}"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    register()

    with pytest.raises(Exception, match="Unexpected end of expression"):
        broker.drain()

    assert OutboxEmail.objects.get().status == Status.FAILED


def test_host_templates_override_the_package(settings: Any, tmp_path: Any) -> None:
    folder = tmp_path / "kinwise_auth" / "email"
    folder.mkdir(parents=True)
    (folder / "verify_email_subject.txt").write_text("Confirm {{ site_name }}\n")
    (folder / "verify_email.txt").write_text("Go to {{ verification_url }}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]
    settings.KINWISE_AUTH = {"FRONTEND_URL": "https://a.example", "SITE_NAME": "Acme"}

    register()

    (message,) = mail.outbox
    assert message.subject == "Confirm Acme"
    assert message.body.startswith("Go to https://a.example/verify-email?token=")


def test_links_ignore_the_host_header(api: Any, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["*"]
    settings.USE_X_FORWARDED_HOST = True
    api.post(
        "/api/v1/auth/register/",
        register_body(),
        format="json",
        HTTP_HOST="evil.example",
        HTTP_X_FORWARDED_HOST="evil.example",
    )

    (message,) = mail.outbox
    assert "evil.example" not in message.body
    assert "https://app.example.com/verify-email?token=" in message.body


def test_subject_is_a_single_line(settings: Any, tmp_path: Any) -> None:
    folder = tmp_path / "kinwise_auth" / "email"
    folder.mkdir(parents=True)
    (folder / "verify_email_subject.txt").write_text("Line one\nBcc: x@evil.com\n")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [str(tmp_path)]}]

    register()

    assert mail.outbox[0].subject == "Line one Bcc: x@evil.com"
    assert mail.outbox[0].message()["Bcc"] is None


def test_retry_delays_grow_and_never_drop_to_zero(
    flaky: type[FlakySMTP], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "DELIVERY_RETRY_BACKOFF": 10,
        "DELIVERY_RETRY_BACKOFF_MAX": 600,
        "DELIVERY_MAX_RETRIES": 4,
    }
    countdowns: list[float] = []
    original = tasks.deliver.retry

    def record(*args: Any, **kwargs: Any) -> Any:
        countdowns.append(kwargs["countdown"])
        return original(*args, **{**kwargs, "countdown": 0})

    monkeypatch.setattr(tasks.deliver, "retry", record)
    flaky.failures = 10
    register()

    # Steps of 10, 20, 40, 80 s, each delay within the upper half of its step.
    assert len(countdowns) == 4
    for step, countdown in zip([10, 20, 40, 80], countdowns, strict=True):
        assert step / 2 <= countdown <= step


@pytest.mark.django_db
def test_site_name_defaults_to_the_frontends_host(settings: Any) -> None:
    from kinwise_auth.emails import site_name

    settings.KINWISE_AUTH = {"FRONTEND_URL": "https://shop.acme.example:8443/app"}

    assert site_name() == "shop.acme.example"


@pytest.mark.django_db
def test_site_name_is_the_current_sites_where_the_framework_is_set_up(
    settings: Any,
) -> None:
    from django.contrib.sites.models import Site

    from kinwise_auth.emails import site_name

    settings.KINWISE_AUTH = {"FRONTEND_URL": "https://shop.acme.example"}
    settings.SITE_ID = Site.objects.create(domain="acme.example", name="Acme Shop").pk
    Site.objects.clear_cache()

    assert site_name() == "Acme Shop"
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "SITE_NAME": "Acme"}
    assert site_name() == "Acme"
