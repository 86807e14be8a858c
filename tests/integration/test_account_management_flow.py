"""Password reset and email change over real HTTP, broker, worker, PostgreSQL and SMTP.

Each account is made the way a user makes one (register -> verification email over
SMTP -> verify-email), then:

* password reset: sign in -> password/reset/ -> the reset link by SMTP ->
  password/reset/confirm/ -> the "password changed" notice -> the refresh token of
  the earlier session is refused, only the new password signs in, the link is dead.
* email change: sign in -> email/change/ -> the confirmation link by SMTP at the NEW
  address -> email/change/confirm/ -> the notice at the OLD address -> only the new
  address signs in.

The link tokens must not reach the worker's log (nor this process's).

Rate limits: the autouse ``_clear_cache`` fixture of ``tests/conftest.py`` clears the
cache before every test; each test makes one request to register/ and
password/reset/ (3 per 10 min per IP and per email), at most four to login/ (10 a
minute per IP; one failure, of 5 per 10 min per email) and at most two to any other
endpoint.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model

from kinwise_auth.models import EmailIdentity, LinkToken, OutboxEmail
from kinwise_auth.normalization import normalize_email
from kinwise_auth.publishing import DELIVER_TASK
from tests.support.accounts import PASSWORD, new_address
from tests.support.delivery import fail_on_failed_delivery, wait_until_settled
from tests.support.http import Answer, post_json, request_json
from tests.support.smtp import ReceivedEmail, SMTPServer
from tests.support.workers import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "another-Staple-horse-42"
VERIFY_SUBJECT = "Verify your app.example.com account"
WELCOME_SUBJECT = "Welcome to app.example.com!"
RESET_SUBJECT = "Reset your app.example.com password"
PASSWORD_CHANGED_SUBJECT = "Your app.example.com password was changed"
CHANGE_SUBJECT = "Confirm your new app.example.com email address"
EMAIL_CHANGED_SUBJECT = "Your app.example.com email address was changed"
VERIFY_LINK = re.compile(
    r"https://app\.example\.com/verify-email\?token=([A-Za-z0-9_-]+)"
)
RESET_LINK = re.compile(
    r"https://app\.example\.com/reset-password\?token=([A-Za-z0-9_-]+)"
)
CHANGE_LINK = re.compile(
    r"https://app\.example\.com/confirm-email-change\?token=([A-Za-z0-9_-]+)"
)


def link_token(message: ReceivedEmail, link: re.Pattern[str]) -> str:
    """The token of the one ``link`` in the text part, also in the HTML part."""
    text = message.part("plain")
    found = link.findall(text)
    assert len(found) == 1, text
    token = str(found[0])
    assert f"?token={token}" in message.part("html")
    return token


def subjects(mailbox: SMTPServer, recipient: str) -> list[str]:
    return [m.subject for m in mailbox.messages(recipient)]


def login(api: str, address: str, password: str) -> Answer:
    return post_json(f"{api}/login/", {"email": address, "password": password})


def register_and_verify(
    api: str, mailbox: SMTPServer, address: str, check: Callable[[], None]
) -> str:
    """An active, verified account at ``address``; returns the verification token."""
    answer = post_json(
        f"{api}/register/",
        {"email": address, "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert answer.status == 201, answer.body
    verification = mailbox.wait_for(address, VERIFY_SUBJECT, check=check)
    token = link_token(verification, VERIFY_LINK)
    answer = post_json(f"{api}/verify-email/", {"token": token})
    assert answer.status == 200, answer.body
    assert answer.body["user"] == {"email": address, "is_active": True}
    return token


def assert_not_logged(
    worker: Worker, caplog: pytest.LogCaptureFixture, tokens: dict[str, str]
) -> None:
    """No token in the worker's log (read for real) nor in this process's."""
    worker_log = worker.log()
    assert DELIVER_TASK in worker_log  # the log is the worker's, and read
    for name, token in tokens.items():
        assert token not in worker_log, f"the {name} token is in the worker's log"
        assert token not in caplog.text, f"the {name} token is in the test's log"


def test_password_reset_by_emailed_link(
    api: str,
    celery_worker: Worker,
    mailbox: SMTPServer,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    address = new_address("reset")
    delivered = fail_on_failed_delivery(celery_worker, address)
    verification_token = register_and_verify(api, mailbox, address, delivered)

    answer = login(api, address, PASSWORD)
    assert answer.status == 200, answer.body
    assert set(answer.body) == {"access", "refresh", "user"}, answer.body
    assert answer.body["user"]["email"] == address
    # The refresh token is live right before the reset (with rotation on, the
    # answer carries the one that is live now).
    refreshed = post_json(
        f"{api}/token/refresh/", {"refresh": str(answer.body["refresh"])}
    )
    assert refreshed.status == 200, refreshed.body
    refresh = str(refreshed.body.get("refresh", answer.body["refresh"]))

    answer = post_json(f"{api}/password/reset/", {"email": address})
    assert answer.status == 200, answer.body
    reset_email = mailbox.wait_for(address, RESET_SUBJECT, check=delivered)
    assert reset_email.rcpt_tos == (address,)
    assert reset_email.message["To"] == address
    token = link_token(reset_email, RESET_LINK)

    confirm = {
        "token": token,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    }
    answer = post_json(f"{api}/password/reset/confirm/", confirm)
    assert answer.status == 200, answer.body

    notice = mailbox.wait_for(address, PASSWORD_CHANGED_SUBJECT, check=delivered)
    assert notice.rcpt_tos == (address,)
    assert token not in notice.raw.decode("utf-8", "replace")

    answer = post_json(f"{api}/token/refresh/", {"refresh": refresh})
    assert answer.status == 401, answer.body
    assert answer.body["code"] == "token_not_valid", answer.body

    answer = login(api, address, PASSWORD)
    assert answer.status == 400, answer.body
    assert answer.body["code"] == "invalid_credentials", answer.body
    answer = login(api, address, NEW_PASSWORD)
    assert answer.status == 200, answer.body
    assert answer.body["user"]["email"] == address

    again = {
        "token": token,
        "new_password": "yet-Another-pass-77",
        "new_password_confirm": "yet-Another-pass-77",
    }
    answer = post_json(f"{api}/password/reset/confirm/", again)
    assert answer.status == 400, answer.body
    assert answer.body["code"] == "invalid_token", answer.body
    answer = login(api, address, NEW_PASSWORD)  # the reuse changed nothing
    assert answer.status == 200, answer.body

    wait_until_settled(check=celery_worker.assert_alive)
    assert subjects(mailbox, address) == [
        VERIFY_SUBJECT,
        WELCOME_SUBJECT,
        RESET_SUBJECT,
        PASSWORD_CHANGED_SUBJECT,
    ]
    assert [m.rcpt_tos for m in mailbox.messages()] == [(address,)] * 4
    assert set(
        OutboxEmail.objects.filter(recipient=address).values_list("status", flat=True)
    ) == {OutboxEmail.Status.SENT}
    link = LinkToken.objects.get(purpose=LinkToken.Purpose.PASSWORD_RESET)
    assert link.used_at is not None
    assert token not in link.token_hash
    assert_not_logged(
        celery_worker,
        debug_logs,
        {"verification": verification_token, "password reset": token},
    )


def test_email_change_confirmed_from_the_new_address(
    api: str,
    celery_worker: Worker,
    mailbox: SMTPServer,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    old = new_address("before")
    # Mixed case: the payload and the mailbox get the address as the user typed it.
    new = f"Moved.{uuid.uuid4().hex[:12]}@example.com"
    delivered = fail_on_failed_delivery(celery_worker, old, new)
    verification_token = register_and_verify(api, mailbox, old, delivered)

    answer = login(api, old, PASSWORD)
    assert answer.status == 200, answer.body
    access, user_id = str(answer.body["access"]), answer.body["user"]["id"]

    answer = post_json(
        f"{api}/email/change/",
        {"new_email": new, "password": PASSWORD},
        access=access,
    )
    assert answer.status == 200, answer.body
    confirmation = mailbox.wait_for(new, CHANGE_SUBJECT, check=delivered)
    assert confirmation.rcpt_tos == (new,)
    assert confirmation.message["To"] == new
    assert new in confirmation.part("plain")
    token = link_token(confirmation, CHANGE_LINK)
    # Nothing moves until the link is used.
    identity = EmailIdentity.objects.get(user_id=user_id)
    assert identity.email == old

    answer = post_json(f"{api}/email/change/confirm/", {"token": token})
    assert answer.status == 200, answer.body
    assert answer.body["email"] == new, answer.body
    assert answer.body["id"] == user_id, answer.body

    notice = mailbox.wait_for(old, EMAIL_CHANGED_SUBJECT, check=delivered)
    assert notice.rcpt_tos == (old,)
    assert new in notice.part("plain")
    assert token not in notice.raw.decode("utf-8", "replace")

    answer = login(api, new, PASSWORD)
    assert answer.status == 200, answer.body
    assert answer.body["user"]["id"] == user_id, answer.body
    assert answer.body["user"]["email"] == new, answer.body
    answer = request_json("GET", f"{api}/me/", access=str(answer.body["access"]))
    assert answer.status == 200, answer.body
    assert answer.body["email"] == new
    answer = login(api, old, PASSWORD)
    assert answer.status == 400, answer.body
    assert answer.body["code"] == "invalid_credentials", answer.body

    identity.refresh_from_db()
    assert identity.email == new
    assert identity.email_normalized == normalize_email(new)
    user_model = get_user_model()
    user = user_model._default_manager.get(pk=user_id)
    assert getattr(user, user_model.get_email_field_name()) == new

    wait_until_settled(check=celery_worker.assert_alive)
    assert subjects(mailbox, new) == [CHANGE_SUBJECT]
    assert subjects(mailbox, old) == [
        VERIFY_SUBJECT,
        WELCOME_SUBJECT,
        EMAIL_CHANGED_SUBJECT,
    ]
    assert len(mailbox.messages()) == 4  # to nobody else
    assert set(
        OutboxEmail.objects.filter(recipient__in=[old, new]).values_list(
            "status", flat=True
        )
    ) == {OutboxEmail.Status.SENT}
    link = LinkToken.objects.get(purpose=LinkToken.Purpose.EMAIL_CHANGE)
    assert link.used_at is not None
    assert link.email == new
    assert_not_logged(
        celery_worker,
        debug_logs,
        {"verification": verification_token, "email change": token},
    )
