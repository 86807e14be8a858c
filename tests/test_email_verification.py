from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail

from kinwise_auth.models import AuthEvent, EmailIdentity, LinkToken, OutboxEmail
from kinwise_auth.signals import email_verified

from .conftest import register_body

VERIFY = "/api/v1/auth/verify-email/"
RESEND = "/api/v1/auth/resend-verification/"

pytestmark = pytest.mark.django_db(transaction=True)


def token_from(message: Any) -> str:
    match = re.search(r"verify-email\?token=([A-Za-z0-9_\-]+)", message.body)
    assert match, message.body
    return match.group(1)


@pytest.fixture
def registered(api: Any) -> str:
    """Register new@example.com and return the token its email carries."""
    response = api.post("/api/v1/auth/register/", register_body(), format="json")
    assert response.status_code == 201
    (message,) = mail.outbox
    mail.outbox.clear()
    return token_from(message)


def identity() -> EmailIdentity:
    return EmailIdentity.objects.select_related("user").get(
        email_normalized="new@example.com"
    )


def test_post_verifies_activates_and_welcomes(api: Any, registered: str) -> None:
    received = []
    email_verified.connect(lambda **kw: received.append(kw), weak=False)
    try:
        response = api.post(VERIFY, {"token": registered}, format="json")
    finally:
        email_verified.receivers.clear()

    assert response.status_code == 200
    assert response.json() == {
        "message": "Email verified successfully",
        "user": {"email": "new@example.com", "is_active": True},
    }
    assert identity().user.is_active
    assert identity().verified_at is not None
    (welcome,) = mail.outbox
    assert welcome.subject == "Welcome to app.example.com!"
    assert welcome.to == ["new@example.com"]
    assert received and received[0]["user"] == identity().user
    assert AuthEvent.objects.filter(event_type="email_verified").count() == 1


def test_get_form_verifies(api: Any, registered: str) -> None:
    response = api.get(VERIFY, {"token": registered})

    assert response.status_code == 200
    assert identity().user.is_active


def test_link_works_once_then_answers_already_verified(
    api: Any, registered: str
) -> None:
    api.post(VERIFY, {"token": registered}, format="json")
    mail.outbox.clear()

    response = api.post(VERIFY, {"token": registered}, format="json")

    assert response.status_code == 200
    assert response.json()["message"] == "Email already verified"
    assert mail.outbox == []  # one welcome email only
    assert AuthEvent.objects.filter(event_type="email_verified").count() == 1


@pytest.mark.parametrize(
    "token", ["", "x", "A" * 43, "nope-" * 10, "\u00e9\u00e9\u00e9", "a" * 256]
)
def test_unknown_token_is_invalid_token(api: Any, registered: str, token: str) -> None:
    response = api.post(VERIFY, {"token": token}, format="json")

    assert response.status_code == 400
    if token:
        assert response.json() == {
            "detail": "Invalid verification token.",
            "code": "invalid_token",
        }
    assert not identity().user.is_active


@pytest.mark.parametrize(
    "body", [{}, {"token": 123}, {"token": ["a"]}, {"token": None}]
)
def test_malformed_token_is_400(api: Any, body: Any) -> None:
    assert api.post(VERIFY, body, format="json").status_code == 400


def test_get_without_token_is_400(api: Any) -> None:
    response = api.get(VERIFY)

    assert response.status_code == 400
    assert "token" in response.json()


def test_expired_token(api: Any, settings: Any) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "EMAIL_VERIFICATION_LIFETIME": 0,  # seconds: expired as soon as minted
    }
    api.post("/api/v1/auth/register/", register_body(), format="json")

    response = api.post(VERIFY, {"token": token_from(mail.outbox[0])}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Verification token has expired.",
        "code": "token_expired",
    }
    assert not identity().user.is_active


def test_a_newer_link_supersedes_the_older(api: Any, registered: str) -> None:
    api.post(RESEND, {"email": "new@example.com"}, format="json")
    newer = token_from(mail.outbox[0])

    old = api.post(VERIFY, {"token": registered}, format="json")
    new = api.post(VERIFY, {"token": newer}, format="json")

    assert old.json()["code"] == "invalid_token"
    assert new.status_code == 200


def test_token_of_another_purpose_is_refused(api: Any, registered: str) -> None:
    LinkToken.objects.update(purpose="password_reset")

    response = api.post(VERIFY, {"token": registered}, format="json")

    assert response.json()["code"] == "invalid_token"


def test_never_reactivates_an_account_an_admin_deactivated(
    api: Any, registered: str
) -> None:
    api.post(VERIFY, {"token": registered}, format="json")
    user = identity().user
    user.is_active = False  # the admin bans the account
    user.save()

    response = api.post(VERIFY, {"token": registered}, format="json")

    assert response.status_code == 200
    assert response.json() == {"message": "Email already verified"}
    user.refresh_from_db()
    assert not user.is_active


def test_key_rotation_keeps_sent_links_alive(api: Any, settings: Any) -> None:
    old_key = settings.SECRET_KEY
    api.post("/api/v1/auth/register/", register_body(), format="json")
    token = token_from(mail.outbox[0])

    settings.SECRET_KEY = "a-brand-new-secret-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = [old_key]

    assert api.post(VERIFY, {"token": token}, format="json").status_code == 200


def test_token_never_stored_or_logged_in_clear(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    api.post("/api/v1/auth/register/", register_body(), format="json")
    token = token_from(mail.outbox[0])

    stored = [
        *LinkToken.objects.values_list("token_hash", flat=True),
        *(str(row) for row in OutboxEmail.objects.values()),
        *(str(row) for row in AuthEvent.objects.values()),
    ]
    assert all(token not in value for value in stored)
    assert token not in caplog.text
    assert token not in str(LinkToken.objects.get())


# --- resend ---------------------------------------------------------------


RESEND_BODY = {"message": "If the email exists, a verification email has been sent."}


def test_resend_answers_the_same_whatever_the_account(api: Any, make_user: Any) -> None:
    make_user("active@example.com")
    make_user("pending@example.com", verified=False)
    make_user("banned@example.com", active=False)
    answers = []
    for email in [
        "active@example.com",
        "pending@example.com",
        "banned@example.com",
        "unknown@example.com",
    ]:
        response = api.post(
            RESEND,
            {"email": email},
            format="json",
            REMOTE_ADDR=f"10.2.0.{len(answers)}",
        )
        answers.append(
            (response.status_code, response.content, sorted(response.headers.keys()))
        )

    assert len(set(map(str, answers))) == 1
    assert answers[0][0] == 200
    # Only the pending account gets a link.
    (message,) = mail.outbox
    assert message.to == ["pending@example.com"]
    assert "verify-email?token=" in message.body


def test_resend_does_the_same_work_whatever_the_account(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    make_user("pending@example.com", verified=False)
    # One identity read, one outbox insert, one audit insert, one publish, on
    # every path; the task decides after commit whether there is a link to send.
    for email in ["pending@example.com", "unknown@example.com"]:
        with assert_queries(3):
            api.post(RESEND, {"email": email}, format="json")
    assert len(broker) == 2
    assert [list(message["body"][0]) for message in broker] == [
        [pk] for pk in OutboxEmail.objects.order_by("pk").values_list("pk", flat=True)
    ]
    broker.drain()
    statuses = list(OutboxEmail.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == ["sent", "skipped"]


def test_resend_validates_the_email(api: Any) -> None:
    assert api.post(RESEND, {"email": 5}, format="json").status_code == 400
    assert api.post(RESEND, {"email": "nope"}, format="json").status_code == 400


def test_resend_is_limited_per_email(api: Any) -> None:
    for n in range(3):
        api.post(
            RESEND, {"email": "a@example.com"}, format="json", REMOTE_ADDR=f"10.1.0.{n}"
        )

    response = api.post(
        RESEND, {"email": "A@example.com"}, format="json", REMOTE_ADDR="10.1.0.9"
    )

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"


def test_get_form_keeps_the_token_out_of_error_reports(
    api: Any, registered: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from django.views.debug import ExceptionReporter
    from django.views.decorators.debug import sensitive_variables

    from kinwise_auth import crypto

    @sensitive_variables()
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(crypto, "candidate_hashes", explode)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("django.request").addHandler(handler)
    api.raise_request_exception = False
    try:
        response = api.get(VERIFY, {"token": registered})
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    (record,) = [r for r in records if r.exc_info]
    report = ExceptionReporter(record.request, *record.exc_info).get_traceback_html()  # type: ignore[attr-defined, misc]

    assert response.status_code == 500
    assert "Request URL" in report
    assert registered not in report
