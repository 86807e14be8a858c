from __future__ import annotations

from typing import Any

import pytest

from kinwise_auth import audit
from kinwise_auth.models import AuthEvent
from kinwise_auth.services import RequestMeta
from kinwise_auth.signals import EVENT_SIGNALS, user_registered

from .conftest import register_body

pytestmark = pytest.mark.django_db(transaction=True)

CALLS: list[dict[str, Any]] = []


def host_audit_log(**kwargs: Any) -> None:
    """Stands for the host's own audit log, like the plan's log_action."""
    CALLS.append(kwargs)


def test_record_writes_an_event_sends_its_signal_and_calls_the_hook(
    make_user: Any, settings: Any
) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "AUDIT_CALLABLE": f"{__name__}.host_audit_log",
    }
    user = make_user()
    received: list[dict[str, Any]] = []
    user_registered.connect(
        lambda **kw: received.append(kw), weak=False, dispatch_uid="t"
    )
    CALLS.clear()
    try:
        event = audit.record(
            "user_registered",
            user=user,
            meta=RequestMeta(ip="192.0.2.1", user_agent="pytest"),
            extra={"via": "test"},
        )
    finally:
        user_registered.disconnect(dispatch_uid="t")

    assert (event.event_type, event.user, event.ip, event.user_agent) == (
        "user_registered",
        user,
        "192.0.2.1",
        "pytest",
    )
    assert received[0]["user"] == user and received[0]["ip"] == "192.0.2.1"
    assert [
        {
            "event_type": "user_registered",
            "user": user,
            "ip": "192.0.2.1",
            "user_agent": "pytest",
            "extra": {"via": "test"},
        }
    ] == CALLS


def test_registration_is_audited_with_ip_and_user_agent(api: Any) -> None:
    api.post(
        "/api/v1/auth/register/",
        register_body(),
        format="json",
        REMOTE_ADDR="198.51.100.7",
        HTTP_USER_AGENT="Mozilla/5.0",
    )

    event = AuthEvent.objects.get(event_type="user_registered")
    assert (event.ip, event.user_agent) == ("198.51.100.7", "Mozilla/5.0")
    assert event.extra == {}


def test_every_event_has_a_signal() -> None:
    assert set(EVENT_SIGNALS) == {
        "user_registered",
        "registration_for_existing_email",
        "pending_registration_replaced",
        "verification_requested",
        "email_verified",
        "email_delivery_failed",
        "login_code_requested",
        "login_succeeded",
        "login_failed",
        "logged_out",
        "password_reset_requested",
        "password_reset",
        "password_changed",
        "email_change_requested",
        "email_changed",
        "account_deleted",
        "session_opened",
        "session_rotated",
        "session_reused",
        "session_revoked",
        "mfa_changed",
        "passkey_sign_count_regressed",
    }
