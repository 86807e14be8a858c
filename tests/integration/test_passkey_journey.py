"""Passkeys over real HTTP, PostgreSQL, Redis, a Celery worker and SMTP.

An account signs in by password and adds a passkey (a software authenticator's
answers, the kind py_webauthn accepts: tests/test_passkeys.py proves it), which
the owner is told of by email; it signs in with the passkey alone, then with the
password and the passkey as the second step; an answer whose sign count went
back is refused and audited, and the sessions it did not open keep working.
Then every challenge the server gave (a ceremony's secret for five minutes) and
the ``mfa_token`` are searched for in every row of every table, every key of the
Redis databases and both processes' logs: only their keyed hashes are kept.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from kinwise_auth.models import AuthEvent, EmailIdentity, Passkey, PasskeyChallenge
from kinwise_auth.normalization import normalize_email
from tests.celery_app import app as celery_app
from tests.support.accounts import PASSWORD, new_address
from tests.support.delivery import fail_on_failed_delivery, wait_until_settled
from tests.support.http import request_json
from tests.support.smtp import SMTPServer
from tests.support.workers import Worker
from tests.webauthn_device import SoftwareAuthenticator, unb64

from .test_mfa_journey import call, found
from .test_sign_in_journey import database_contents, redis_contents, redis_databases

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ORIGIN = "https://app.example.com"  # the test settings' FRONTEND_URL
MFA_SUBJECT = "Two-step sign-in changed on your app.example.com account"


def test_a_passkey_journey_leaves_no_challenge_behind(
    api: str,
    celery_worker: Worker,
    mailbox: SMTPServer,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    address = new_address("passkey")
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
    device = SoftwareAuthenticator(origin=ORIGIN)
    challenges: list[str] = []

    def given(options: dict[str, Any]) -> dict[str, Any]:
        challenges.append(str(options["challenge"]))
        return options

    # Signed in by password, a passkey added with the password.
    access = call("POST", f"{api}/login/", credentials).body["access"]
    creation = given(
        call(
            "POST", f"{api}/passkeys/register/options/", {"password": PASSWORD}, access
        ).body["options"]
    )
    added = call(
        "POST",
        f"{api}/passkeys/register/",
        {"credential": device.create(creation), "name": "Laptop"},
        access,
    )
    assert added.status == 201 and len(added.body["recovery_codes"]) == 10
    notice = mailbox.wait_for(address, MFA_SUBJECT, check=delivered)
    assert "A passkey was just added" in notice.part("plain")

    # The passkey alone signs in: no address, no second step.
    found_options = call("POST", f"{api}/passkeys/login/options/").body
    options = given(found_options["options"])
    signed_in = call(
        "POST",
        f"{api}/passkeys/login/",
        {
            "challenge_id": found_options["challenge_id"],
            "credential": device.get(options),
        },
    ).body
    assert set(signed_in) == {"access", "refresh", "user"}
    me = call("GET", f"{api}/me/", access=signed_in["access"]).body
    assert me["email"] == address

    # The password is now the first of two steps; the passkey finishes it.
    first = call("POST", f"{api}/login/", credentials).body
    assert first["mfa_required"] is True
    assert first["methods"] == ["passkey", "recovery_code"]
    second_options = given(
        call(
            "POST",
            f"{api}/mfa/authenticate/passkey/options/",
            {"mfa_token": first["mfa_token"]},
        ).body["options"]
    )
    finished = call(
        "POST",
        f"{api}/mfa/authenticate/passkey/",
        {"mfa_token": first["mfa_token"], "credential": device.get(second_options)},
    ).body
    assert set(finished) == {"access", "refresh", "user"}

    # A genuine answer whose count went back: refused, audited, nothing revoked.
    again = call("POST", f"{api}/passkeys/login/options/").body
    given(again["options"])
    cloned = request_json(
        "POST",
        f"{api}/passkeys/login/",
        {
            "challenge_id": again["challenge_id"],
            "credential": device.get(again["options"], sign_count=1),
        },
    )
    assert cloned.status == 400 and cloned.body["code"] == "invalid_credentials"
    assert AuthEvent.objects.filter(
        event_type="passkey_sign_count_regressed", user=user
    ).exists()
    assert call("GET", f"{api}/me/", access=finished["access"]).status == 200

    # --- where the challenges are not ---------------------------------------
    wait_until_settled(
        broker_url=str(celery_app.conf.broker_url), check=celery_worker.assert_alive
    )
    assert Passkey.objects.get(user=user).sign_count == 2
    assert PasskeyChallenge.objects.filter(user=None).count() == 2
    secrets = {
        **{f"challenge {n}": value for n, value in enumerate(challenges)},
        **{f"challenge {n} (hex)": unb64(v).hex() for n, v in enumerate(challenges)},
        "the mfa_token": str(first["mfa_token"]),
    }
    assert len(challenges) == 4
    assert found([("the options", str(found_options["options"]))], secrets) == [
        "challenge 1 in the options"
    ]
    assert found([("the worker's log", celery_worker.log())], secrets) == []
    assert found([("the test process's log", debug_logs.text)], secrets) == []
    for url in redis_databases():
        assert found(redis_contents(url), secrets) == []
    assert str(settings.CACHES["default"]["LOCATION"]) in redis_databases()
    contents, counts = database_contents()
    assert counts[PasskeyChallenge._meta.db_table] == 4
    assert found(contents, {"the address": address})  # the scan reads values
    assert found(contents, secrets) == []
