"""Every word of the email templates is marked for translation; catalogues apply."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.template.loader import render_to_string
from django.utils import translation

import kinwise_auth
from kinwise_auth import emails, outbox

EMAIL_TEMPLATES = Path(kinwise_auth.__file__).parent / "templates/kinwise_auth/email"
TEMPLATES = sorted(path.name for path in EMAIL_TEMPLATES.iterdir())

# Removed in this order: marked text first, then what is not text.
NOT_TO_TRANSLATE = [
    re.compile(
        r"{%\s*blocktrans(?:late)?\b.*?%}.*?{%\s*endblocktrans(?:late)?\s*%}", re.S
    ),
    re.compile(r"{%\s*comment\b.*?%}.*?{%\s*endcomment\s*%}", re.S),
    re.compile(r"{#.*?#}", re.S),
    re.compile(r"{%.*?%}", re.S),  # tags, {% translate "..." %} among them
    re.compile(r"{{.*?}}", re.S),
    re.compile(r"<[^>]*>"),
    re.compile(r"&(?:#\w+|\w+);"),
]

FRENCH = {
    "Your %(site_name)s password was changed": (
        "Le mot de passe %(site_name)s a été changé"
    ),
    "Hi %(name)s,": "Bonjour %(name)s,",
}


def unmarked_words(source: str) -> list[str]:
    for pattern in NOT_TO_TRANSLATE:
        source = pattern.sub(" ", source)
    return re.findall(r"[^\W\d_]+", source)


def mo_file(messages: dict[str, str]) -> bytes:
    """A GNU gettext catalogue (.mo) in UTF-8 holding ``messages``."""
    catalogue = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(catalogue)
    ids = [key.encode() for key in keys]
    strs = [catalogue[key].encode() for key in keys]
    start = 7 * 4 + 16 * len(keys)  # header, then the two tables of (length, offset)
    data = b""
    offsets = []
    for string in ids + strs:
        offsets.append((len(string), start + len(data)))
        data += string + b"\0"
    header = struct.pack(
        "<7I", 0x950412DE, 0, len(keys), 28, 28 + 8 * len(keys), 0, start
    )
    table = b"".join(struct.pack("<2I", *pair) for pair in offsets)
    return header + table + data


@pytest.fixture
def french(settings: Any, tmp_path: Path) -> None:
    """A French catalogue in ``LOCALE_PATHS``, loaded afresh."""
    messages = tmp_path / "fr" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    (messages / "django.mo").write_bytes(mo_file(FRENCH))
    # Changing LOCALE_PATHS empties Django's translation caches, here and on undo.
    settings.LOCALE_PATHS = [str(tmp_path)]


def test_every_template_is_checked() -> None:
    assert len(TEMPLATES) == 42  # fourteen kinds: subject, text, HTML


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_text_is_left_unmarked(name: str) -> None:
    source = (EMAIL_TEMPLATES / name).read_text(encoding="utf-8")
    assert "{% load i18n %}" in source
    assert unmarked_words(source) == []


def test_the_check_finds_unmarked_text() -> None:
    source = '{% load i18n %}<p title="x">{% translate "Hi" %} there {{ a }}</p>'
    assert unmarked_words(source) == ["there"]


def test_the_active_language_translates_the_email(french: None) -> None:
    context = {"site_name": "KinWise", "user": None, "email": "ada@example.com"}
    subject = "kinwise_auth/email/password_changed_subject.txt"

    assert render_to_string(subject, context) == "Your KinWise password was changed\n"
    with translation.override("fr"):
        assert render_to_string(subject, context) == (
            "Le mot de passe KinWise a été changé\n"
        )
        body = render_to_string("kinwise_auth/email/password_changed.txt", context)
    assert body.startswith("Bonjour ada@example.com,\n\nThe password of your KinWise")


@pytest.mark.django_db
def test_delivery_renders_in_the_language_active_when_it_runs(
    french: None, make_user: Any
) -> None:
    user = make_user("ada@example.com")
    row = outbox.queue("password_changed", recipient="ada@example.com", user=user)
    with translation.override("fr"):
        assert emails.send(row.pk) == "sent"

    (message,) = mail.outbox
    assert message.subject == "Le mot de passe app.example.com a été changé"
    assert message.body.startswith("Bonjour ada@example.com,\n")
    assert "<p>Bonjour ada@example.com,</p>" in str(message.alternatives[0][0])
