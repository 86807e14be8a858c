"""Reliability rule 5 for real: a beat schedules the purge, a worker runs it.

A ``celery beat`` and a ``celery worker`` of the test's own, on a private
redis-server, with lifetimes and retentions of seconds (``KINWISE_TEST_AUTH``):
link tokens, login codes, sent outbox rows and audit rows that expired go; what
is still live, and an email still waiting to be sent, stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from kinwise_auth.models import AuthEvent, LinkToken, LoginCode, OutboxEmail
from kinwise_auth.services import RequestMeta, register_user, request_login_code
from kinwise_auth.services.secrets import mint_link, mint_login_code
from tests.support.accounts import PASSWORD, new_address
from tests.support.brokers import private_redis, publisher_broker
from tests.support.smtp import SMTPServer
from tests.support.waiting import wait_until
from tests.support.workers import start_beat, start_worker, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LIFETIME = 3  # seconds: every lifetime and retention the worker runs with
PURGE_EVERY = 1.0  # seconds between two purges the beat schedules
TIMEOUT = 30.0
Status = OutboxEmail.Status


def test_beat_purges_what_expired_and_keeps_what_lives(
    make_user: Callable[..., Any],
    smtp_server: SMTPServer,
    mailbox: SMTPServer,
    tmp_path: Path,
) -> None:
    auth = {
        "EMAIL_VERIFICATION_LIFETIME": LIFETIME,
        "LOGIN_CODE_LIFETIME": LIFETIME,
        "OUTBOX_RETENTION": LIFETIME,
        "AUDIT_RETENTION": LIFETIME,
        "PURGE_BATCH": 2,  # several batches for the rows below
    }
    with private_redis(tmp_path) as broker:
        env = subprocess_env(
            broker_url=broker.url, smtp_port=smtp_server.port, auth=auth
        )
        with (
            start_worker(env, log_path=tmp_path / "worker.log") as worker,
            publisher_broker(broker.url),
        ):
            registered = [new_address("pending") for _ in range(3)]
            for address in registered:
                register_user(email=address, password=PASSWORD, meta=RequestMeta())
            active = make_user(new_address("active"))
            request_login_code(email=active.email, meta=RequestMeta())
            wait_until(
                lambda: OutboxEmail.objects.filter(status=Status.SENT).count() == 4,
                timeout=TIMEOUT,
                what="the worker sending the four emails",
            )
            assert LinkToken.objects.count() == 3
            assert LoginCode.objects.count() == 1
            assert AuthEvent.objects.count() >= 4
            sent_before = set(OutboxEmail.objects.values_list("pk", flat=True))

            # What must stay: a token and a code still live, an email never sent.
            # (The new code supersedes the one just sent, which has expired by
            # the purge anyway: the purge goes by expiry alone.)
            mint_link(
                user=active,
                purpose=LinkToken.Purpose.PASSWORD_RESET,
                valid_for=timedelta(hours=1),
            )
            live_token = LinkToken.objects.get(
                user=active, purpose=LinkToken.Purpose.PASSWORD_RESET
            )
            mint_login_code(user=active, valid_for=timedelta(hours=1))
            live_code = LoginCode.objects.filter(user=active).live().get()
            waiting = OutboxEmail.objects.create(
                kind=OutboxEmail.Kind.LOGIN_CODE,
                user=active,
                recipient=active.email,
            )
            OutboxEmail.objects.filter(pk=waiting.pk).update(
                created_at=timezone.now() - timedelta(days=30)
            )
            time.sleep(LIFETIME + 0.5)  # everything the worker wrote has expired

            beat_env = {**env, "KINWISE_TEST_PURGE_EVERY": str(PURGE_EVERY)}
            with start_beat(
                beat_env, log_path=tmp_path / "beat.log", schedule_dir=tmp_path
            ) as beat:

                def purged() -> bool:
                    worker.assert_alive()
                    beat.assert_alive()
                    return not (
                        OutboxEmail.objects.filter(pk__in=sent_before).exists()
                        or LinkToken.objects.exclude(pk=live_token.pk).exists()
                        or LoginCode.objects.exclude(pk=live_code.pk).exists()
                        or AuthEvent.objects.exists()
                    )

                wait_until(purged, timeout=TIMEOUT, what="beat purging")

            beat_log = beat.log()
            assert "kinwise_auth.tasks.purge_expired" in beat_log
            assert "kinwise_auth.tasks.purge_expired" in worker.log()
            assert LinkToken.objects.filter(pk=live_token.pk).exists()
            assert LoginCode.objects.filter(pk=live_code.pk).exists()
            assert OutboxEmail.objects.get(pk=waiting.pk).status == Status.PENDING
            assert len(mailbox.messages()) >= 4
