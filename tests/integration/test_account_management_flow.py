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

import json
import logging
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth import get_user_model

from kinwise_auth.models import EmailIdentity, LinkToken, OutboxEmail
from kinwise_auth.normalization import normalize_email

if TYPE_CHECKING:
    from .conftest import Mailbox, ReceivedEmail, Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-Horse-battery-9"
NEW_PASSWORD = "another-Staple-horse-42"
HTTP_TIMEOUT = 10.0
IDLE_TIMEOUT = 20.0  # seconds for the worker to finish every queued email
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
DELIVER_TASK = "kinwise_auth.tasks.deliver"
FINAL = (OutboxEmail.Status.SENT, OutboxEmail.Status.SKIPPED, OutboxEmail.Status.FAILED)

# Straight to the live server, whatever proxy the environment configures.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(
    method: str,
    url: str,
    payload: dict[str, Any] | None = None,
    *,
    access: str | None = None,
) -> tuple[int, Any]:
    """One JSON request over real HTTP; the status and the parsed body (or None)."""
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    if access is not None:
        headers["Authorization"] = f"Bearer {access}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _opener.open(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def new_address(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def fail_on_failed_delivery(worker: Worker, *recipients: str) -> Callable[[], None]:
    """A poll check: fail at once if the worker died or gave up on a recipient."""

    def check() -> None:
        worker.assert_alive()
        failed = list(
            OutboxEmail.objects.filter(
                recipient__in=recipients, status=OutboxEmail.Status.FAILED
            ).values_list("recipient", "kind", "last_error")
        )
        if failed:
            pytest.fail(f"the worker could not deliver: {failed}")

    return check


def wait_until_idle(worker: Worker) -> None:
    """Every outbox row final: no email is still on its way."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    while True:
        busy = list(
            OutboxEmail.objects.exclude(status__in=FINAL).values_list("pk", "status")
        )
        if not busy:
            return
        worker.assert_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"outbox rows {busy} are not final after {IDLE_TIMEOUT:.0f}s")
        time.sleep(0.1)


def link_token(message: ReceivedEmail, link: re.Pattern[str]) -> str:
    """The token of the one ``link`` in the text part, also in the HTML part."""
    text = message.part("plain")
    found = link.findall(text)
    assert len(found) == 1, text
    token = str(found[0])
    assert f"?token={token}" in message.part("html")
    return token


def subjects(mailbox: Mailbox, recipient: str) -> list[str]:
    return [m.subject for m in mailbox.messages(recipient)]


def login(api: str, address: str, password: str) -> tuple[int, Any]:
    return call("POST", f"{api}/login/", {"email": address, "password": password})


def register_and_verify(
    api: str, mailbox: Mailbox, address: str, check: Callable[[], None]
) -> str:
    """An active, verified account at ``address``; returns the verification token."""
    status, body = call(
        "POST",
        f"{api}/register/",
        {"email": address, "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert status == 201, body
    verification = mailbox.wait_for(address, VERIFY_SUBJECT, check=check)
    token = link_token(verification, VERIFY_LINK)
    status, body = call("POST", f"{api}/verify-email/", {"token": token})
    assert status == 200, body
    assert body["user"] == {"email": address, "is_active": True}
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
    live_server: Any,
    celery_worker: Worker,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kinwise_auth")
    caplog.set_level(logging.DEBUG, logger="django")
    api = f"{live_server.url}/api/v1/auth"
    address = new_address("reset")
    delivered = fail_on_failed_delivery(celery_worker, address)
    verification_token = register_and_verify(api, mailbox, address, delivered)

    status, body = login(api, address, PASSWORD)
    assert status == 200, body
    assert set(body) == {"access", "refresh", "user"}, body
    assert body["user"]["email"] == address
    # The refresh token is live right before the reset (with rotation on, the
    # answer carries the one that is live now).
    status, refreshed = call(
        "POST", f"{api}/token/refresh/", {"refresh": str(body["refresh"])}
    )
    assert status == 200, refreshed
    refresh = str(refreshed.get("refresh", body["refresh"]))

    status, body = call("POST", f"{api}/password/reset/", {"email": address})
    assert status == 200, body
    reset_email = mailbox.wait_for(address, RESET_SUBJECT, check=delivered)
    assert reset_email.rcpt_tos == (address,)
    assert reset_email.message["To"] == address
    token = link_token(reset_email, RESET_LINK)

    confirm = {
        "token": token,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    }
    status, body = call("POST", f"{api}/password/reset/confirm/", confirm)
    assert status == 200, body

    notice = mailbox.wait_for(address, PASSWORD_CHANGED_SUBJECT, check=delivered)
    assert notice.rcpt_tos == (address,)
    assert token not in notice.raw.decode("utf-8", "replace")

    status, body = call("POST", f"{api}/token/refresh/", {"refresh": refresh})
    assert status == 401, body
    assert body["code"] == "token_not_valid", body

    status, body = login(api, address, PASSWORD)
    assert status == 400, body
    assert body["code"] == "invalid_credentials", body
    status, body = login(api, address, NEW_PASSWORD)
    assert status == 200, body
    assert body["user"]["email"] == address

    again = {
        "token": token,
        "new_password": "yet-Another-pass-77",
        "new_password_confirm": "yet-Another-pass-77",
    }
    status, body = call("POST", f"{api}/password/reset/confirm/", again)
    assert status == 400, body
    assert body["code"] == "invalid_token", body
    status, body = login(api, address, NEW_PASSWORD)  # the reuse changed nothing
    assert status == 200, body

    wait_until_idle(celery_worker)
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
        caplog,
        {"verification": verification_token, "password reset": token},
    )


def test_email_change_confirmed_from_the_new_address(
    live_server: Any,
    celery_worker: Worker,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kinwise_auth")
    caplog.set_level(logging.DEBUG, logger="django")
    api = f"{live_server.url}/api/v1/auth"
    old = new_address("before")
    # Mixed case: the payload and the mailbox get the address as the user typed it.
    new = f"Moved.{uuid.uuid4().hex[:12]}@example.com"
    delivered = fail_on_failed_delivery(celery_worker, old, new)
    verification_token = register_and_verify(api, mailbox, old, delivered)

    status, body = login(api, old, PASSWORD)
    assert status == 200, body
    access, user_id = str(body["access"]), body["user"]["id"]

    status, body = call(
        "POST",
        f"{api}/email/change/",
        {"new_email": new, "password": PASSWORD},
        access=access,
    )
    assert status == 200, body
    confirmation = mailbox.wait_for(new, CHANGE_SUBJECT, check=delivered)
    assert confirmation.rcpt_tos == (new,)
    assert confirmation.message["To"] == new
    assert new in confirmation.part("plain")
    token = link_token(confirmation, CHANGE_LINK)
    # Nothing moves until the link is used.
    identity = EmailIdentity.objects.get(user_id=user_id)
    assert identity.email == old

    status, body = call("POST", f"{api}/email/change/confirm/", {"token": token})
    assert status == 200, body
    assert body["email"] == new, body
    assert body["id"] == user_id, body

    notice = mailbox.wait_for(old, EMAIL_CHANGED_SUBJECT, check=delivered)
    assert notice.rcpt_tos == (old,)
    assert new in notice.part("plain")
    assert token not in notice.raw.decode("utf-8", "replace")

    status, body = login(api, new, PASSWORD)
    assert status == 200, body
    assert body["user"]["id"] == user_id, body
    assert body["user"]["email"] == new, body
    status, body = call("GET", f"{api}/me/", access=str(body["access"]))
    assert status == 200, body
    assert body["email"] == new
    status, body = login(api, old, PASSWORD)
    assert status == 400, body
    assert body["code"] == "invalid_credentials", body

    identity.refresh_from_db()
    assert identity.email == new
    assert identity.email_normalized == normalize_email(new)
    user_model = get_user_model()
    user = user_model._default_manager.get(pk=user_id)
    assert getattr(user, user_model.get_email_field_name()) == new

    wait_until_idle(celery_worker)
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
        caplog,
        {"verification": verification_token, "email change": token},
    )
