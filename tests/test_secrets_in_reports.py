"""Codes, tokens and passwords never show in Django's exception reports.

Django's error pages and admin error emails list each frame's local variables;
every function that holds a secret is marked ``sensitive_variables``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.core import mail
from django.views.debug import ExceptionReporter
from django.views.decorators.debug import sensitive_variables

from kinwise_auth import crypto, emails
from kinwise_auth.services import RequestMeta, verify_login_code
from kinwise_auth.services.identities import find_identity
from kinwise_auth.services.secrets import mint_login_code

from .conftest import PASSWORD, register_body

pytestmark = pytest.mark.django_db(transaction=True)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def reported(api: Any, method: str, url: str, body: Any) -> str:
    """Send a request that crashes; return the report Django's error email and
    debug page would show for it (``django.request``'s record, as
    ``AdminEmailHandler`` renders it, with every frame's variables)."""
    handler = Captured()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    api.raise_request_exception = False
    try:
        response = getattr(api, method)(url, body, format="json")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    (record,) = [r for r in handler.records if r.exc_info]
    request = getattr(record, "request", None)
    return ExceptionReporter(request, *record.exc_info).get_traceback_html()  # type: ignore[misc]


@sensitive_variables()  # the test's own stand-in must not leak either
def explode(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom")


def test_a_crash_while_checking_a_code_does_not_report_it(
    api: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user("alice@example.com")
    api.post("/api/v1/auth/otp/request/", {"email": "alice@example.com"}, format="json")
    code = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE).group(1)  # type: ignore[union-attr]

    monkeypatch.setattr(crypto, "matches", explode)
    text = reported(
        api,
        "post",
        "/api/v1/auth/otp/verify/",
        {"email": "alice@example.com", "code": code},
    )

    assert "Local vars" in text  # the report does show frames' variables
    assert re.search(rf"(?<!\d){code}(?!\d)", text) is None


def test_a_crash_while_checking_a_link_does_not_report_it(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.post("/api/v1/auth/register/", register_body(), format="json")
    token = re.search(r"token=([\w\-]+)", mail.outbox[-1].body).group(1)  # type: ignore[union-attr]

    monkeypatch.setattr(crypto, "candidate_hashes", explode)
    text = reported(api, "post", "/api/v1/auth/verify-email/", {"token": token})

    assert "Local vars" in text
    assert token not in text


def test_a_crash_while_minting_does_not_report_the_secret(
    make_user: Any, broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kinwise_auth.models import OutboxEmail
    from kinwise_auth.services import RequestMeta, request_login_code

    make_user("alice@example.com")
    request_login_code(email="alice@example.com", meta=RequestMeta())
    minted: list[str] = []
    original = crypto.new_login_code
    monkeypatch.setattr(
        crypto, "new_login_code", lambda n: minted.append(original(n)) or minted[-1]
    )

    monkeypatch.setattr(emails, "render_to_string", explode)
    with pytest.raises(RuntimeError) as raised:
        emails.send(OutboxEmail.objects.get().pk)
    # From emails.send down: what a worker's error report would hold.
    tb = raised.tb.tb_next
    text = ExceptionReporter(None, raised.type, raised.value, tb).get_traceback_html()

    assert "Local vars" in text
    assert minted and re.search(rf"(?<!\d){minted[0]}(?!\d)", text) is None


@pytest.mark.parametrize("kind", ["password_reset", "verify_email", "email_change"])
def test_a_crash_while_rendering_a_link_does_not_report_it(
    kind: str, make_user: Any, broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kinwise_auth import outbox

    user = make_user("alice@example.com", verified=kind != "verify_email")
    context = {"new_email": "new@example.com"} if kind == "email_change" else {}
    row = outbox.queue(kind, user=user, recipient="alice@example.com", context=context)
    minted: list[str] = []
    original = crypto.new_link_token
    monkeypatch.setattr(
        crypto, "new_link_token", lambda: minted.append(original()) or minted[-1]
    )

    monkeypatch.setattr(emails, "render_to_string", explode)
    with pytest.raises(RuntimeError) as raised:
        emails.send(row.pk)
    tb = raised.tb.tb_next
    text = ExceptionReporter(None, raised.type, raised.value, tb).get_traceback_html()

    assert "Local vars" in text
    assert minted and minted[0] not in text


def test_passwords_are_not_reported(
    api: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kinwise_auth.services.password_login as password_login

    make_user("alice@example.com")

    monkeypatch.setattr(password_login, "sign_in_or_challenge", explode)
    text = reported(
        api,
        "post",
        "/api/v1/auth/login/",
        {"email": "alice@example.com", "password": PASSWORD},
    )

    assert "Local vars" in text
    assert PASSWORD not in text


def test_services_called_outside_a_view_hide_their_secrets(
    make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task or host code calling a service directly gets the same protection."""
    make_user("alice@example.com")
    monkeypatch.setattr(crypto, "matches", explode)
    user = find_identity("alice@example.com").user  # type: ignore[union-attr]
    code = mint_login_code(user=user)

    with pytest.raises(RuntimeError) as raised:
        verify_login_code(email="alice@example.com", code=code, meta=RequestMeta())
    tb = raised.tb.tb_next  # from the service down
    text = ExceptionReporter(None, raised.type, raised.value, tb).get_traceback_html()

    assert "Local vars" in text
    assert "918273" not in text
