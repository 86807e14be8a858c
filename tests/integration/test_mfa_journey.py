"""Two-step sign-in over real HTTP, PostgreSQL, Redis, a Celery worker and SMTP,
and the scan of the sign-in journey extended to its secrets.

An account signs in by password, steps up with an emailed code, enrols an
authenticator app (its secret from the set-up answer, codes computed here),
signs out, and signs in twice more: with a recovery code, then with the app.
Then the TOTP secret, every recovery code, both ``mfa_token``s and the emailed
code are searched for in every row of every table, every key of the Redis
databases, the published task messages and both processes' logs: they may exist
in clear only in the answers and the email that carried them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pyotp
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from kinwise_auth.models import (
    Authenticator,
    EmailIdentity,
    MfaChallenge,
    OutboxEmail,
    RecoveryCode,
)
from kinwise_auth.normalization import normalize_email
from kinwise_auth.services.factors import totp
from tests.celery_app import app as celery_app
from tests.support.accounts import PASSWORD, new_address
from tests.support.delivery import fail_on_failed_delivery, wait_until_settled
from tests.support.http import Answer, request_json
from tests.support.smtp import SMTPServer
from tests.support.workers import Worker

from .test_sign_in_journey import database_contents, redis_contents, redis_databases

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CONFIRM_SUBJECT = "Your app.example.com confirmation code"
MFA_SUBJECT = "Two-step sign-in changed on your app.example.com account"


def call(method: str, url: str, body: Any = None, access: str | None = None) -> Answer:
    answer = request_json(method, url, body, access=access)
    assert answer.status < 300, (url, answer.status, answer.body)
    return answer


def found(contents: Iterable[tuple[str, str]], secrets: dict[str, str]) -> list[str]:
    """Where any of ``secrets`` occurs in ``contents``. A six-digit code counts
    only between non-digits (a longer run of digits may hold it by chance);
    the others are long enough to match as substrings."""
    patterns = {
        name: re.compile(
            rf"(?<!\d){re.escape(value)}(?!\d)"
            if value.isdigit()
            else re.escape(value),
            re.IGNORECASE,
        )
        for name, value in secrets.items()
    }
    return [
        f"{name} in {where}"
        for where, text in contents
        for name, pattern in patterns.items()
        if pattern.search(text)
    ]


def test_two_step_sign_in_leaves_no_secret_behind(
    api: str,
    celery_worker: Worker,
    mailbox: SMTPServer,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    address = new_address("mfa")
    user_model = get_user_model()
    fields = {user_model.get_email_field_name(): address}
    if user_model.get_email_field_name() != user_model.USERNAME_FIELD:
        fields[user_model.USERNAME_FIELD] = address
    user = user_model._default_manager.create_user(password=PASSWORD, **fields)
    EmailIdentity.objects.create(
        user=user,
        email=address,
        email_normalized=normalize_email(address),
        verified_at=timezone.now(),
    )
    delivered = fail_on_failed_delivery(celery_worker, address)
    credentials = {"email": address, "password": PASSWORD}

    # Signed in by password; the step-up by an emailed code.
    access = call("POST", f"{api}/login/", credentials).body["access"]
    call("POST", f"{api}/reauthenticate/email-code/", {}, access)
    email = mailbox.wait_for(address, CONFIRM_SUBJECT, check=delivered)
    emailed = re.search(r"^\s+(\d{6})\s*$", email.part("plain"), re.MULTILINE)
    assert emailed, email.part("plain")
    call("POST", f"{api}/reauthenticate/", {"email_code": emailed.group(1)}, access)

    # Enrolment, proven by the step-up: the app's secret, a code from it.
    setup = call("POST", f"{api}/mfa/totp/setup/", {}, access).body
    secret = str(setup["secret"])
    now = pyotp.TOTP(secret).timecode(timezone.now())
    confirmed = call(
        "POST", f"{api}/mfa/totp/confirm/", {"code": totp.code_at(secret, now)}, access
    ).body
    codes = list(confirmed["recovery_codes"])
    assert len(codes) == 10

    # Signed in again: the password gets an mfa_token; a recovery code, then
    # (next time) a code of the app's next step finish it.
    first = call("POST", f"{api}/login/", credentials).body
    assert first["mfa_required"] is True
    by_code = call(
        "POST",
        f"{api}/mfa/authenticate/",
        {"mfa_token": first["mfa_token"], "code": codes[0]},
    ).body
    assert set(by_code) == {"access", "refresh", "user"}
    second = call("POST", f"{api}/login/", credentials).body
    by_app = call(
        "POST",
        f"{api}/mfa/authenticate/",
        {"mfa_token": second["mfa_token"], "code": totp.code_at(secret, now + 1)},
    ).body
    assert call("GET", f"{api}/me/", access=by_app["access"]).body["email"] == address

    # --- where the secrets are not ------------------------------------------
    wait_until_settled(
        broker_url=str(celery_app.conf.broker_url), check=celery_worker.assert_alive
    )
    assert [m.subject for m in mailbox.messages(address)] == [
        CONFIRM_SUBJECT,
        MFA_SUBJECT,  # the app enabled
        MFA_SUBJECT,  # a recovery code used
    ]
    assert set(
        OutboxEmail.objects.filter(recipient=address).values_list("status", flat=True)
    ) == {OutboxEmail.Status.SENT}
    secrets = {
        "the TOTP secret": secret,
        "the first mfa_token": str(first["mfa_token"]),
        "the second mfa_token": str(second["mfa_token"]),
        "the emailed code": emailed.group(1),
        **{f"recovery code {n}": code for n, code in enumerate(codes)},
        **{
            f"recovery code {n} as typed": code.replace("-", "")
            for n, code in enumerate(codes)
        },
    }
    # The search finds them where they are meant to be.
    assert found([("the email", email.part("plain"))], secrets) == [
        "the emailed code in the email"
    ]
    assert "the TOTP secret in the set-up" in found(
        [("the set-up", setup["otpauth_url"])], secrets
    )

    worker_log = celery_worker.log()
    assert found([("the worker's log", worker_log)], secrets) == []
    assert found([("the test process's log", debug_logs.text)], secrets) == []
    for url in redis_databases():
        assert found(redis_contents(url), secrets) == []
    assert str(settings.CACHES["default"]["LOCATION"]) in redis_databases()

    contents, counts = database_contents()
    for model in (Authenticator, RecoveryCode, MfaChallenge):
        assert counts[model._meta.db_table] > 0, model._meta.db_table
    assert found(contents, {"the address": address})  # the scan reads values
    assert found(contents, secrets) == []
