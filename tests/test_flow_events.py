"""Each account-management flow writes its ``AuthEvent`` and sends its signal.

A flow is driven over HTTP up to its last step; the receiver is connected just
before that step, so what it records is the step's own event and nothing earlier.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.core import mail
from rest_framework.test import APIClient

from kinwise_auth.models import AuthEvent
from kinwise_auth.signals import EVENT_SIGNALS

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth"
NEW_PASSWORD = "another-Staple-horse-42"
IP = "198.51.100.23"


def token_in_last_email(path: str) -> str:
    match = re.search(rf"{re.escape(path)}\?token=([\w\-]+)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def signed_in(api: APIClient) -> APIClient:
    response = api.post(
        f"{AUTH}/login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    )
    client = APIClient(REMOTE_ADDR=IP)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return client


def reset_requested(api: APIClient) -> Callable[[], Any]:
    return lambda: api.post(
        f"{AUTH}/password/reset/", {"email": "alice@example.com"}, format="json"
    )


def password_reset(api: APIClient) -> Callable[[], Any]:
    api.post(f"{AUTH}/password/reset/", {"email": "alice@example.com"}, format="json")
    token = token_in_last_email("/reset-password")
    body = {
        "token": token,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    }
    return lambda: api.post(f"{AUTH}/password/reset/confirm/", body, format="json")


def password_changed(api: APIClient) -> Callable[[], Any]:
    client = signed_in(api)
    body = {
        "current_password": PASSWORD,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    }
    return lambda: client.post(f"{AUTH}/password/change/", body, format="json")


def email_change_requested(api: APIClient) -> Callable[[], Any]:
    client = signed_in(api)
    body = {"new_email": "alice.new@example.com", "password": PASSWORD}
    return lambda: client.post(f"{AUTH}/email/change/", body, format="json")


def email_changed(api: APIClient) -> Callable[[], Any]:
    email_change_requested(api)()
    token = token_in_last_email("/confirm-email-change")
    return lambda: api.post(
        f"{AUTH}/email/change/confirm/", {"token": token}, format="json"
    )


def account_deleted(api: APIClient) -> Callable[[], Any]:
    client = signed_in(api)
    return lambda: client.post(
        f"{AUTH}/account/delete/", {"password": PASSWORD}, format="json"
    )


# event type -> (prepare the flow, return its last step; the status it answers;
# the extra the event carries; whether the event keeps its user).
FLOWS: dict[str, tuple[Callable[[APIClient], Callable[[], Any]], int, Any, bool]] = {
    "password_reset_requested": (reset_requested, 200, {}, True),
    "password_reset": (password_reset, 200, {}, True),
    "password_changed": (password_changed, 200, {}, True),
    "email_change_requested": (email_change_requested, 200, {}, True),
    "email_changed": (
        email_changed,
        200,
        {"old_email": "alice@example.com", "new_email": "alice.new@example.com"},
        True,
    ),
    # The audit trail outlives the user: the row stays, its user cleared.
    "account_deleted": (account_deleted, 204, {"mode": "delete"}, False),
}


@pytest.mark.parametrize("event_type", list(FLOWS))
def test_the_flow_writes_its_event_and_sends_its_signal(
    event_type: str, make_user: Any
) -> None:
    prepare, status, extra, keeps_user = FLOWS[event_type]
    alice = make_user("alice@example.com")
    last_step = prepare(APIClient(REMOTE_ADDR=IP))
    received: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        # The user's pk as sent: a deleted user's goes to None afterwards.
        received.append({**kwargs, "user_pk": kwargs["user"].pk})

    EVENT_SIGNALS[event_type].connect(receiver, weak=False, dispatch_uid="flow")
    try:
        response = last_step()
    finally:
        EVENT_SIGNALS[event_type].disconnect(dispatch_uid="flow")

    assert response.status_code == status, response.content
    (event,) = AuthEvent.objects.filter(event_type=event_type)
    assert event.user_id == (alice.pk if keeps_user else None)
    assert (event.ip, event.extra) == (IP, extra)
    (signal,) = received
    assert signal["user_pk"] == alice.pk
    assert (signal["ip"], signal["extra"]) == (IP, extra)
