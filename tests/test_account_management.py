"""Password reset and change, email change, account deletion."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from rest_framework.test import APIClient

from kinwise_auth.models import (
    AuthEvent,
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
)

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

RESET = "/api/v1/auth/password/reset/"
RESET_CONFIRM = "/api/v1/auth/password/reset/confirm/"
CHANGE = "/api/v1/auth/password/change/"
EMAIL_CHANGE = "/api/v1/auth/email/change/"
EMAIL_CONFIRM = "/api/v1/auth/email/change/confirm/"
DELETE = "/api/v1/auth/account/delete/"
LOGIN = "/api/v1/auth/login/"
REFRESH = "/api/v1/auth/token/refresh/"
NEW_PASSWORD = "another-Staple-horse-42"


def link_token(message: Any, path: str) -> str:
    match = re.search(rf"{re.escape(path)}\?token=([\w\-]+)", message.body)
    assert match, message.body
    return match.group(1)


def reset_token() -> str:
    return link_token(mail.outbox[-1], "/reset-password")


def change_token() -> str:
    return link_token(mail.outbox[-1], "/confirm-email-change")


def sign_in(
    api: Any, email: str = "alice@example.com", password: str = PASSWORD
) -> Any:
    return api.post(LOGIN, {"email": email, "password": password}, format="json")


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def confirm_reset(api: Any, token: str, password: str = NEW_PASSWORD) -> Any:
    body = {"token": token, "new_password": password, "new_password_confirm": password}
    return api.post(RESET_CONFIRM, body, format="json")


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


@pytest.fixture
def session(api: Any, alice: Any) -> dict[str, str]:
    response = sign_in(api)
    assert response.status_code == 200
    return dict(response.json())


# --- password reset ------------------------------------------------------------


def test_reset_link_sets_the_password_once(api: Any, alice: Any) -> None:
    response = api.post(RESET, {"email": "ALICE@example.com"}, format="json")
    assert response.status_code == 200
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == "Reset your app.example.com password"
    token = reset_token()

    first = confirm_reset(api, token)
    second = confirm_reset(api, token, password="yet-Another-pass-77")

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["code"] == "invalid_token"
    assert sign_in(api, password=NEW_PASSWORD).status_code == 200
    assert sign_in(api, password=PASSWORD).status_code == 400
    notice = mail.outbox[-1]
    assert notice.subject == "Your app.example.com password was changed"


def test_an_old_reset_link_dies_when_a_newer_one_is_sent(api: Any, alice: Any) -> None:
    api.post(RESET, {"email": "alice@example.com"}, format="json")
    old = reset_token()
    api.post(RESET, {"email": "alice@example.com"}, format="json")
    new = reset_token()

    assert confirm_reset(api, old).json()["code"] == "invalid_token"
    assert confirm_reset(api, new).status_code == 200


def test_reset_revokes_every_refresh_token(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    api.post(RESET, {"email": "alice@example.com"}, format="json")

    confirm_reset(api, reset_token())
    response = api.post(REFRESH, {"refresh": session["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_reset_answers_the_same_for_every_kind_of_address(
    api: Any, make_user: Any
) -> None:
    make_user("active@example.com")
    make_user("pending@example.com", verified=False)
    make_user("banned@example.com", active=False)
    answers = set()
    for n, email in enumerate(
        ["active@example.com", "pending@example.com", "banned@example.com", "x@y.com"]
    ):
        response = api.post(
            RESET, {"email": email}, format="json", REMOTE_ADDR=f"10.20.0.{n}"
        )
        answers.add(
            (response.status_code, response.content, tuple(sorted(response.items())))
        )

    assert len(answers) == 1
    # The active and the pending account get a link; the deactivated one none.
    assert sorted(m.to[0] for m in mail.outbox) == [
        "active@example.com",
        "pending@example.com",
    ]


def test_reset_does_the_same_work_for_every_address(
    api: Any, alice: Any, broker: Any, assert_queries: Any
) -> None:
    for n, email in enumerate(["alice@example.com", "nobody@example.com"]):
        with assert_queries(3):
            api.post(RESET, {"email": email}, format="json", REMOTE_ADDR=f"10.21.0.{n}")
    assert len(broker) == 2


def test_a_reset_proves_the_mailbox_of_a_pending_account(
    api: Any, make_user: Any
) -> None:
    user = make_user("pending@example.com", verified=False)
    api.post(RESET, {"email": "pending@example.com"}, format="json")

    assert confirm_reset(api, reset_token()).status_code == 200

    user.refresh_from_db()
    assert user.is_active
    assert EmailIdentity.objects.get(user=user).verified_at is not None
    assert {m.subject for m in mail.outbox} >= {"Welcome to app.example.com!"}


def test_a_deactivated_account_gets_no_link_and_a_link_dies_with_it(
    api: Any, alice: Any
) -> None:
    api.post(RESET, {"email": "alice@example.com"}, format="json")
    token = reset_token()
    alice.is_active = False
    alice.save()
    mail.outbox.clear()

    api.post(RESET, {"email": "alice@example.com"}, format="json")
    response = confirm_reset(api, token)

    assert mail.outbox == []
    assert response.json()["code"] == "invalid_token"
    alice.refresh_from_db()
    assert not alice.is_active


def test_an_expired_reset_link(api: Any, alice: Any, settings: Any) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "PASSWORD_RESET_LIFETIME": 0,
    }
    api.post(RESET, {"email": "alice@example.com"}, format="json")

    assert confirm_reset(api, reset_token()).json() == {
        "detail": "This password reset link has expired. Request a new one.",
        "code": "token_expired",
    }


def test_a_weak_new_password_keeps_the_link_usable(api: Any, alice: Any) -> None:
    api.post(RESET, {"email": "alice@example.com"}, format="json")
    token = reset_token()

    weak = confirm_reset(api, token, password="password")
    mismatch = api.post(
        RESET_CONFIRM,
        {"token": token, "new_password": NEW_PASSWORD, "new_password_confirm": "x"},
        format="json",
    )

    assert weak.status_code == 400
    assert "new_password" in weak.json()
    assert mismatch.json() == {"new_password_confirm": ["Passwords do not match."]}
    assert confirm_reset(api, token).status_code == 200


def test_a_verification_link_does_not_reset_a_password(
    api: Any, make_user: Any
) -> None:
    api.post(
        "/api/v1/auth/register/",
        {
            "email": "new@example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
        format="json",
    )
    verification = link_token(mail.outbox[-1], "/verify-email")

    assert confirm_reset(api, verification).json()["code"] == "invalid_token"


# --- password change ---------------------------------------------------------


def change(client: APIClient, current: str = PASSWORD, new: str = NEW_PASSWORD) -> Any:
    body = {
        "current_password": current,
        "new_password": new,
        "new_password_confirm": new,
    }
    return client.post(CHANGE, body, format="json")


def test_change_keeps_this_session_and_revokes_the_others(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    other = sign_in(api).json()

    response = change(bearer(session["access"]))

    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Your password has been changed."
    assert (
        api.post(REFRESH, {"refresh": other["refresh"]}, format="json").status_code
        == 401
    )
    assert (
        api.post(REFRESH, {"refresh": body["refresh"]}, format="json").status_code
        == 200
    )
    assert bearer(body["access"]).get("/api/v1/auth/me/").status_code == 200
    assert sign_in(api, password=NEW_PASSWORD).status_code == 200
    assert mail.outbox[-1].subject == "Your app.example.com password was changed"
    assert "signed out of your other sessions" in mail.outbox[-1].body
    assert AuthEvent.objects.filter(event_type="password_changed").count() == 1


def test_revoking_on_change_is_a_setting(
    api: Any, alice: Any, session: dict[str, str], settings: Any
) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "REVOKE_REFRESH_ON_PASSWORD_CHANGE": False,
    }

    change(bearer(session["access"]))

    assert (
        api.post(REFRESH, {"refresh": session["refresh"]}, format="json").status_code
        == 200
    )
    assert "signed out" not in mail.outbox[-1].body


def test_change_with_a_wrong_current_password(session: dict[str, str]) -> None:
    response = change(bearer(session["access"]), current="not-it-at-all")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"


def test_change_applies_the_validators(session: dict[str, str]) -> None:
    response = change(bearer(session["access"]), new="12345678")

    assert response.status_code == 400
    assert "new_password" in response.json()


def test_change_needs_a_bearer(api: Any, alice: Any) -> None:
    api.force_login(alice)

    assert change(api).status_code == 401


# --- email change ------------------------------------------------------------


def request_change(client: APIClient, new_email: str, password: str = PASSWORD) -> Any:
    return client.post(
        EMAIL_CHANGE, {"new_email": new_email, "password": password}, format="json"
    )


def test_email_change_confirmed_from_the_new_address(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    response = request_change(bearer(session["access"]), "Alice.New@example.com")
    assert response.status_code == 200
    (link,) = mail.outbox
    assert link.to == ["Alice.New@example.com"]
    # Nothing changes until the link is used.
    assert EmailIdentity.objects.get(user=alice).email == "alice@example.com"

    token = change_token()
    confirmed = api.post(EMAIL_CONFIRM, {"token": token}, format="json")

    assert confirmed.status_code == 200
    assert confirmed.json()["email"] == "Alice.New@example.com"
    identity = EmailIdentity.objects.get(user=alice)
    assert identity.email_normalized == "alice.new@example.com"
    alice.refresh_from_db()
    assert getattr(alice, alice.get_email_field_name()) == "Alice.New@example.com"
    notice = mail.outbox[-1]
    assert notice.to == ["alice@example.com"]
    assert "Alice.New@example.com" in notice.body
    assert sign_in(api, email="alice.new@example.com").status_code == 200
    assert sign_in(api, email="alice@example.com").status_code == 400
    assert api.post(EMAIL_CONFIRM, {"token": token}, format="json").status_code == 400


def test_a_taken_address_answers_as_a_free_one(
    alice: Any, make_user: Any, session: dict[str, str]
) -> None:
    make_user("bob@example.com")
    client = bearer(session["access"])

    taken = request_change(client, "BOB@example.com")
    free = request_change(client, "carol@example.com")

    assert (taken.status_code, taken.content) == (free.status_code, free.content)
    to_bob, to_carol = mail.outbox
    assert to_bob.to == ["bob@example.com"]
    assert "token=" not in to_bob.body  # the holder is told, nobody gets a link
    assert "tried to move another app.example.com account" in to_bob.body
    assert to_carol.to == ["carol@example.com"]


def test_an_address_taken_before_confirmation_is_email_taken(
    api: Any, alice: Any, make_user: Any, session: dict[str, str]
) -> None:
    request_change(bearer(session["access"]), "carol@example.com")
    token = change_token()
    make_user("Carol@Example.com")

    response = api.post(EMAIL_CONFIRM, {"token": token}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "email_taken"
    assert EmailIdentity.objects.get(user=alice).email == "alice@example.com"


def test_email_change_needs_the_password(session: dict[str, str]) -> None:
    response = request_change(bearer(session["access"]), "x@example.com", "wrong-one")

    assert response.json()["code"] == "invalid_credentials"
    assert mail.outbox == []


def test_an_expired_email_change_link(
    api: Any, session: dict[str, str], settings: Any
) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "EMAIL_CHANGE_LIFETIME": 0,
    }
    request_change(bearer(session["access"]), "carol@example.com")

    response = api.post(EMAIL_CONFIRM, {"token": change_token()}, format="json")

    assert response.json() == {
        "detail": "This email change link has expired. Request a new one.",
        "code": "token_expired",
    }


def test_auth_user_username_follows_the_address(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    user_model = get_user_model()
    request_change(bearer(session["access"]), "carol@example.com")
    api.post(EMAIL_CONFIRM, {"token": change_token()}, format="json")

    alice.refresh_from_db()
    assert getattr(alice, user_model.USERNAME_FIELD) == "carol@example.com"


# --- account deletion ------------------------------------------------------


def delete(client: APIClient, password: str = PASSWORD) -> Any:
    return client.post(DELETE, {"password": password}, format="json")


def test_deletion_removes_the_user_and_keeps_the_audit_trail(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    pk = alice.pk

    response = delete(bearer(session["access"]))

    assert response.status_code == 204
    assert not get_user_model()._default_manager.filter(pk=pk).exists()
    assert not EmailIdentity.objects.exists()
    events = AuthEvent.objects.filter(
        event_type__in=["account_deleted", "login_succeeded"]
    )
    assert events.count() == 2
    assert all(event.user_id is None for event in events)
    assert mail.outbox[-1].subject == "Your app.example.com account was deleted"
    assert mail.outbox[-1].to == ["alice@example.com"]
    assert (
        api.post(REFRESH, {"refresh": session["refresh"]}, format="json").status_code
        == 401
    )


def test_a_deleted_account_cannot_sign_in_by_password_or_code(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    delete(bearer(session["access"]))
    mail.outbox.clear()

    api.post("/api/v1/auth/otp/request/", {"email": "alice@example.com"}, format="json")

    assert sign_in(api).json()["code"] == "invalid_credentials"
    assert mail.outbox == []
    assert OutboxEmail.objects.filter(kind="login_code").get().status == "skipped"


def login_code() -> str:
    match = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE)
    assert match, mail.outbox[-1].body
    return match.group(1)


@pytest.fixture(params=["delete", "deactivate"])
def deletion_mode(request: Any, settings: Any) -> str:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "ACCOUNT_DELETION": request.param,
    }
    return str(request.param)


def test_a_code_minted_before_deletion_does_not_sign_in_after_it(
    api: Any, alice: Any, session: dict[str, str], deletion_mode: str
) -> None:
    api.post("/api/v1/auth/otp/request/", {"email": "alice@example.com"}, format="json")
    code = login_code()

    assert delete(bearer(session["access"])).status_code == 204

    response = api.post(
        "/api/v1/auth/otp/verify/",
        {"email": "alice@example.com", "code": code},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_code"
    # Deleted with the user, or superseded when it is kept: no live code remains.
    assert not LoginCode.objects.filter(user_id=alice.pk).live().exists()


def test_after_deletion_neither_password_nor_code_signs_in(
    api: Any, alice: Any, session: dict[str, str], deletion_mode: str
) -> None:
    assert delete(bearer(session["access"])).status_code == 204
    mail.outbox.clear()

    by_password = sign_in(api)
    api.post("/api/v1/auth/otp/request/", {"email": "alice@example.com"}, format="json")

    assert by_password.status_code == 400
    assert by_password.json()["code"] == "invalid_credentials"
    assert mail.outbox == []  # no code was sent
    assert not LoginCode.objects.exists()


def test_a_deleted_accounts_access_token_is_refused(
    alice: Any, session: dict[str, str], deletion_mode: str
) -> None:
    client = bearer(session["access"])
    assert client.get("/api/v1/auth/me/").status_code == 200

    delete(client)

    response = client.get("/api/v1/auth/me/")
    assert response.status_code == 401
    # Its session was revoked with the account: refused before the user is read.
    assert response.json()["code"] == "token_not_valid"


def test_deletion_needs_the_password(alice: Any, session: dict[str, str]) -> None:
    response = delete(bearer(session["access"]), "wrong-password")

    assert response.json()["code"] == "invalid_credentials"
    alice.refresh_from_db()
    assert alice.is_active


def test_deactivate_and_scrub_instead_of_deleting(
    api: Any, alice: Any, session: dict[str, str], settings: Any
) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "ACCOUNT_DELETION": "deactivate",
    }

    assert delete(bearer(session["access"])).status_code == 204

    alice.refresh_from_db()
    assert not alice.is_active
    assert not alice.has_usable_password()
    assert getattr(alice, alice.get_email_field_name()) == f"deleted-{alice.pk}@invalid"
    assert not EmailIdentity.objects.exists()
    # The address is free for a new account.
    response = api.post(
        "/api/v1/auth/register/",
        {
            "email": "alice@example.com",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
        format="json",
    )
    assert response.status_code == 201
    assert EmailIdentity.objects.get().user_id != alice.pk


def test_link_tokens_are_kept_apart_by_purpose(alice: Any, api: Any) -> None:
    api.post(RESET, {"email": "alice@example.com"}, format="json")
    token = reset_token()

    response = api.post(EMAIL_CONFIRM, {"token": token}, format="json")

    assert response.json()["code"] == "invalid_token"
    assert LinkToken.objects.get().used_at is None


# --- flows retire each other's links ------------------------------------------


def test_moving_to_a_new_address_kills_a_reset_link_sent_to_the_old(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    api.post(RESET, {"email": "alice@example.com"}, format="json")
    old_reset = reset_token()
    request_change(bearer(session["access"]), "new@example.com")
    api.post(EMAIL_CONFIRM, {"token": change_token()}, format="json")

    assert confirm_reset(api, old_reset).json()["code"] == "invalid_token"


def test_a_reset_queued_before_a_move_is_not_sent_to_the_old_address(
    api: Any, alice: Any, session: dict[str, str], broker: Any
) -> None:
    api.post(RESET, {"email": "alice@example.com"}, format="json")
    reset_row = OutboxEmail.objects.get(kind="password_reset")
    waiting = list(broker)  # the reset, not delivered yet
    broker.clear()
    request_change(bearer(session["access"]), "new@example.com")
    broker.drain()
    api.post(EMAIL_CONFIRM, {"token": change_token()}, format="json")
    broker.extend(waiting)
    broker.drain()

    reset_row.refresh_from_db()
    assert reset_row.status == OutboxEmail.Status.SKIPPED
    assert not LinkToken.objects.filter(purpose="password_reset").exists()


def test_a_reset_kills_a_pending_email_change(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    request_change(bearer(session["access"]), "evil@example.com")
    change_link = change_token()
    api.post(RESET, {"email": "alice@example.com"}, format="json")

    confirm_reset(api, reset_token())
    response = api.post(EMAIL_CONFIRM, {"token": change_link}, format="json")

    assert response.json()["code"] == "invalid_token"
    assert EmailIdentity.objects.get(user=alice).email == "alice@example.com"


def test_a_password_change_kills_a_pending_email_change(
    api: Any, alice: Any, session: dict[str, str]
) -> None:
    request_change(bearer(session["access"]), "evil@example.com")
    change_link = change_token()

    change(bearer(session["access"]))

    response = api.post(EMAIL_CONFIRM, {"token": change_link}, format="json")
    assert response.json()["code"] == "invalid_token"
