"""Registration to welcome email over real HTTP, broker, worker, PostgreSQL and SMTP.

Reliability rule 1 (a rolled-back registration sends nothing) and security rule 7
(a token never crosses the broker, the outbox or a log) against real services.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from kinwise_auth.models import EmailIdentity, LinkToken, OutboxEmail
from kinwise_auth.normalization import normalize_email
from kinwise_auth.publishing import DELIVER_TASK
from kinwise_auth.services import RequestMeta, register_user
from tests.support.accounts import PASSWORD, new_address
from tests.support.delivery import fail_on_failed_delivery
from tests.support.http import HTTP_TIMEOUT, OPENER, post_json
from tests.support.smtp import ReceivedEmail, SMTPServer
from tests.support.waiting import wait_until
from tests.support.workers import Worker

if TYPE_CHECKING:
    from .conftest import PublishedTask

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

VERIFY_SUBJECT = "Verify your app.example.com account"
WELCOME_SUBJECT = "Welcome to app.example.com!"
LINK = re.compile(r"https://app\.example\.com/verify-email\?token=([A-Za-z0-9_-]+)")


def register(api: str, address: str) -> None:
    answer = post_json(
        f"{api}/register/",
        {"email": address, "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert answer.status == 201, answer.body
    assert answer.body["email"] == address


def wait_for_status(row_id: int, status: str, worker: Worker) -> OutboxEmail:
    """Poll the outbox row until the worker gave it ``status`` (bounded)."""

    def reached() -> OutboxEmail | None:
        row = OutboxEmail.objects.get(pk=row_id)
        if row.status == OutboxEmail.Status.FAILED:
            pytest.fail(f"outbox row {row_id} failed: {row.last_error}")
        return row if row.status == status else None

    return wait_until(
        reached,
        timeout=20.0,
        what=f"outbox row {row_id} {status!r}",
        check=worker.assert_alive,
        details=lambda: f"it is {OutboxEmail.objects.get(pk=row_id).status!r}",
    )


def assert_well_formed(message: ReceivedEmail, address: str, subject: str) -> None:
    """One recipient, the subject, a From, and both a text and an HTML part."""
    assert message.rcpt_tos == (address,)
    assert message.message["To"] == address
    assert message.subject == subject
    assert "noreply@example.com" in str(message.message["From"])
    assert message.message.get_content_type() == "multipart/alternative"
    assert message.part("plain").strip()
    assert "<html" in message.part("html")


def assert_only_outbox_ids(tasks: list[PublishedTask], rows: list[OutboxEmail]) -> None:
    """Each message names the delivery task and carries one outbox id, nothing more."""
    assert [t.name for t in tasks] == [DELIVER_TASK] * len(rows)
    assert sorted(t.args for t in tasks) == sorted((row.pk,) for row in rows)
    for task in tasks:
        assert task.kwargs == {}
        assert all(type(arg) is int for arg in task.args)
        assert task.headers["argsrepr"] == repr(task.args)


def test_register_verify_and_welcome(
    api: str,
    celery_worker: Worker,
    mailbox: SMTPServer,
    published: list[PublishedTask],
    broker_dump: Callable[[], bytes],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    address = new_address("alice")

    register(api, address)
    identity = EmailIdentity.objects.select_related("user").get(
        email_normalized=normalize_email(address)
    )
    user = identity.user
    assert user.is_active is False
    assert identity.verified_at is None

    verification = mailbox.wait_for(
        address, VERIFY_SUBJECT, check=fail_on_failed_delivery(celery_worker, address)
    )
    assert_well_formed(verification, address, VERIFY_SUBJECT)
    match = LINK.search(verification.part("plain"))
    assert match, verification.part("plain")
    link, token = match.group(0), match.group(1)
    assert link in verification.part("html")
    verify_row = OutboxEmail.objects.get(
        user=user, kind=OutboxEmail.Kind.VERIFY_EMAIL, recipient=address
    )
    wait_for_status(verify_row.pk, OutboxEmail.Status.SENT, celery_worker)

    answer = post_json(f"{api}/verify-email/", {"token": token})
    assert answer.status == 200, answer.body
    assert answer.body["user"] == {"email": address, "is_active": True}
    user.refresh_from_db()
    identity.refresh_from_db()
    assert user.is_active is True
    assert identity.verified_at is not None
    assert getattr(user, get_user_model().get_email_field_name()) == address

    welcome = mailbox.wait_for(
        address, WELCOME_SUBJECT, check=fail_on_failed_delivery(celery_worker, address)
    )
    assert_well_formed(welcome, address, WELCOME_SUBJECT)
    assert token not in welcome.raw.decode("utf-8", "replace")
    welcome_row = OutboxEmail.objects.get(user=user, kind=OutboxEmail.Kind.WELCOME)
    wait_for_status(welcome_row.pk, OutboxEmail.Status.SENT, celery_worker)
    assert [m.subject for m in mailbox.messages(address)] == [
        VERIFY_SUBJECT,
        WELCOME_SUBJECT,
    ]

    # The token exists in clear only in the email.
    for row in OutboxEmail.objects.all():
        assert token not in json.dumps(row.context)
        assert token not in row.last_error
    link_token = LinkToken.objects.get(user=user)
    assert link_token.used_at is not None
    assert token not in link_token.token_hash
    assert_only_outbox_ids(published, [verify_row, welcome_row])
    for task in published:
        assert token not in repr(task.body)
        assert token not in repr(task.headers)
    assert token.encode() not in broker_dump()
    assert DELIVER_TASK in celery_worker.log()  # the log is the worker's, and read
    assert token not in celery_worker.log()
    assert token not in debug_logs.text


class _Rollback(Exception):
    """Raised to roll a transaction back."""


def test_rolled_back_registration_sends_nothing(
    api: str,
    celery_worker: Worker,
    mailbox: SMTPServer,
    published: list[PublishedTask],
) -> None:
    ghost = new_address("ghost")
    with pytest.raises(_Rollback), transaction.atomic():
        register_user(email=ghost, password=PASSWORD, meta=RequestMeta(ip="127.0.0.1"))
        assert OutboxEmail.objects.filter(recipient=ghost).exists()
        raise _Rollback
    assert published == []  # on_commit never ran: nothing reached the broker

    # The worker handles messages in order: once a later registration's email is
    # out, anything the rolled-back one could have queued would have been sent.
    sentinel = new_address("sentinel")
    register(api, sentinel)
    arrived = mailbox.wait_for(
        sentinel, VERIFY_SUBJECT, check=fail_on_failed_delivery(celery_worker, sentinel)
    )
    assert_well_formed(arrived, sentinel, VERIFY_SUBJECT)
    sentinel_row = OutboxEmail.objects.get(recipient=sentinel)
    wait_for_status(sentinel_row.pk, OutboxEmail.Status.SENT, celery_worker)

    assert mailbox.messages(ghost) == []
    assert [m.rcpt_tos for m in mailbox.messages()] == [(sentinel,)]
    assert not OutboxEmail.objects.filter(recipient=ghost).exists()
    assert not EmailIdentity.objects.filter(
        email_normalized=normalize_email(ghost)
    ).exists()
    user_model = get_user_model()
    assert not user_model._default_manager.filter(
        **{user_model.get_email_field_name(): ghost}
    ).exists()
    assert_only_outbox_ids(published, [sentinel_row])


@pytest.mark.parametrize(("how", "status"), [("refuse", 400), ("crash", 500)])
def test_a_host_request_rolled_back_by_atomic_requests_sends_nothing(
    live_server: Any,
    api: str,
    celery_worker: Worker,
    mailbox: SMTPServer,
    published: list[PublishedTask],
    how: str,
    status: int,
) -> None:
    assert settings.DATABASES["default"]["ATOMIC_REQUESTS"] is True
    ghost = new_address("ghost")
    request = urllib.request.Request(
        f"{live_server.url}/host/signup-then-fail/",
        data=json.dumps({"email": ghost, "password": PASSWORD, "how": how}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        OPENER.open(request, timeout=HTTP_TIMEOUT)
    answer.value.close()
    assert answer.value.code == status
    assert published == []  # the request's transaction rolled back: no on_commit

    # As above: once a later email is out, the ghost's would have been too.
    sentinel = new_address("sentinel")
    register(api, sentinel)
    mailbox.wait_for(
        sentinel, VERIFY_SUBJECT, check=fail_on_failed_delivery(celery_worker, sentinel)
    )
    wait_for_status(
        OutboxEmail.objects.get(recipient=sentinel).pk,
        OutboxEmail.Status.SENT,
        celery_worker,
    )

    assert mailbox.messages(ghost) == []
    assert not OutboxEmail.objects.filter(recipient=ghost).exists()
    assert not EmailIdentity.objects.filter(
        email_normalized=normalize_email(ghost)
    ).exists()
