"""The text part of every kind of email reads as written prose.

A paragraph is one line (the templates' translation blocks are trimmed, so the
way a template wraps its source never breaks a sentence in the email), ends like
a sentence, and says lifetimes with real plurals ("1 hour", never "hour(s)").
Only a link or the login code stands on a line of its own.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import translation

from kinwise_auth import emails
from kinwise_auth.models import OutboxEmail, Session
from kinwise_auth.services.meta import RequestMeta
from kinwise_auth.services.sessions import open_session

pytestmark = pytest.mark.django_db

Kind = OutboxEmail.Kind

# What each kind's row needs, and whose it is: "pending", "verified" or nobody.
ROWS: dict[str, tuple[str | None, dict[str, Any]]] = {
    Kind.VERIFY_EMAIL: ("pending", {}),
    Kind.WELCOME: ("verified", {}),
    Kind.ACCOUNT_EXISTS: ("verified", {}),
    Kind.LOGIN_CODE: ("verified", {}),
    Kind.PASSWORD_RESET: ("verified", {}),
    Kind.PASSWORD_CHANGED: ("verified", {"sessions_revoked": True}),
    Kind.EMAIL_CHANGE: ("verified", {"new_email": "new@example.com"}),
    Kind.EMAIL_CHANGED: ("verified", {"new_email": "new@example.com"}),
    Kind.GOODBYE: (None, {}),
    Kind.SIGN_IN_ATTEMPTS: ("verified", {"failures": 10}),
    Kind.SESSION_REUSED: ("verified", {"device": "Firefox 128 on Ubuntu"}),
    # The session the email is about is opened for the row (see delivered_text).
    Kind.NEW_SIGN_IN: ("verified", {"session": None}),
    Kind.MFA_CHANGED: ("verified", {"change": "totp_enabled"}),
    Kind.REAUTHENTICATION_CODE: ("verified", {}),
}
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    (Kind.VERIFY_EMAIL, {"replaces_registration": True}),
    (Kind.ACCOUNT_EXISTS, {"attempt": "email_change"}),
    (Kind.PASSWORD_CHANGED, {"sessions_revoked": False}),
    (Kind.SIGN_IN_ATTEMPTS, {"failures": 1}),
    (Kind.SESSION_REUSED, {"device": ""}),
    (Kind.NEW_SIGN_IN, {"session": None, "user_agent": ""}),
    (Kind.MFA_CHANGED, {"change": "totp_disabled"}),
    (Kind.MFA_CHANGED, {"change": "recovery_codes_renewed"}),
    (Kind.MFA_CHANGED, {"change": "recovery_code_used"}),
    (Kind.MFA_CHANGED, {"change": "factors_reset"}),
]
CASES = [(kind, context) for kind, (_, context) in ROWS.items()] + VARIANTS


def test_every_kind_is_covered() -> None:
    assert set(ROWS) == set(Kind.values)


def delivered_text(kind: str, context: dict[str, Any], make_user: Any) -> str:
    owner = ROWS[kind][0]
    user = None
    if owner is not None:
        user = make_user(f"{owner}@example.com", verified=owner == "verified")
    if "session" in context:
        user_agent = context.pop(
            "user_agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
        )
        open_session(
            user,
            method="code",
            meta=RequestMeta(ip="203.0.113.7", user_agent=user_agent),
        )
        context = {**context, "session": str(Session.objects.get(user=user).public_id)}
    row = OutboxEmail.objects.create(
        kind=kind,
        user=user,
        recipient=f"{owner or 'gone'}@example.com",
        context=context,
    )
    mail.outbox.clear()
    assert emails.send(row.pk) == OutboxEmail.Status.SENT
    (message,) = mail.outbox
    return str(message.body)


def is_own_line(line: str) -> bool:
    """A link, or the indented login code: what stands on a line of its own."""
    return bool(re.fullmatch(r"https?://\S+|\s+\d+", line))


@pytest.mark.parametrize(("kind", "context"), CASES)
def test_the_text_part_is_prose_a_paragraph_a_line(
    kind: str, context: dict[str, Any], make_user: Any
) -> None:
    text = delivered_text(kind, context, make_user)

    assert "{{" not in text and "{%" not in text
    assert "(s)" not in text
    paragraphs = [p for p in text.strip("\n").split("\n\n") if p.strip()]
    assert paragraphs, text
    for paragraph in paragraphs:
        lines = paragraph.split("\n")
        if all(is_own_line(line) for line in lines):
            continue
        assert len(lines) == 1, f"a sentence broken over lines:\n{paragraph}"
        assert paragraph == paragraph.strip(), repr(paragraph)
        assert paragraph[-1] in ".!?:,", f"not a sentence's end: {paragraph!r}"


@pytest.mark.parametrize(
    ("lifetime", "phrase"),
    [
        (timedelta(hours=1), "1 hour"),
        (timedelta(hours=24), "24 hours"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(minutes=10), "10 minutes"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(seconds=20), "1 minute"),
    ],
)
def test_lifetimes_have_real_plurals(lifetime: timedelta, phrase: str) -> None:
    with translation.override("en"):
        assert emails.lifetime_phrase(lifetime) == phrase


def test_a_one_hour_reset_link_says_one_hour(make_user: Any, settings: Any) -> None:
    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "PASSWORD_RESET_LIFETIME": timedelta(hours=1),
    }

    text = delivered_text(Kind.PASSWORD_RESET, {}, make_user)

    assert "This link will expire in 1 hour and works once." in text
