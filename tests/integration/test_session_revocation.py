"""Revocation reaches access tokens at once, over real HTTP, PostgreSQL, the Redis
cache, a Celery worker and an SMTP server.

For each way a session ends — logout, password change, password reset by the
emailed link, deletion, an admin unticking ``is_active``, reuse detection, the
user ending it, and the link of a "new sign-in" email — an access token that
was just accepted (so the cache holds its session as live) is refused on the
very next request, while a session that did not end keeps working.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from kinwise_auth.models import EmailIdentity, Session
from kinwise_auth.normalization import normalize_email
from tests.support.accounts import PASSWORD, new_address
from tests.support.delivery import fail_on_failed_delivery
from tests.support.http import Answer, post_json, request_json
from tests.support.smtp import SMTPServer
from tests.support.workers import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "another-Staple-horse-42"
FIREFOX = (
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36"
)
RESET_LINK = re.compile(r"/reset-password\?token=([A-Za-z0-9_-]+)")
REVOKE_LINK = re.compile(r"/revoke-session\?token=([A-Za-z0-9_-]+)")
NEW_SIGN_IN_SUBJECT = "New sign-in to your app.example.com account"
REUSED_SUBJECT = "We signed out a device of your app.example.com account"
RESET_SUBJECT = "Reset your app.example.com password"


def account() -> Any:
    """A verified, active account (made directly: sign-up is tested elsewhere)."""
    address = new_address("sessions")
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
    return user


def sign_in(api: str, user: Any, agent: str = FIREFOX) -> dict[str, str]:
    answer = post_json(
        f"{api}/login/",
        {"email": user.email, "password": PASSWORD},
        headers={"User-Agent": agent},
    )
    assert answer.status == 200, answer.body
    return dict(answer.body)


def me(api: str, tokens: dict[str, str]) -> int:
    return request_json("GET", f"{api}/me/", access=tokens["access"]).status


def live(api: str, *sessions: dict[str, str]) -> None:
    """Each session's access token is accepted: the cache now says "live"."""
    for tokens in sessions:
        assert me(api, tokens) == 200


def ok(answer: Answer, status: int = 200) -> Answer:
    assert answer.status == status, answer.body
    return answer


def test_logout_and_ending_a_session(api: str) -> None:
    user = account()
    first, second, third = (sign_in(api, user) for _ in range(3))
    live(api, first, second, third)

    ok(post_json(f"{api}/logout/", {"refresh": first["refresh"]}), 205)
    assert me(api, first) == 401

    sid = AccessToken(second["access"])["sid"]  # type: ignore[arg-type]
    ok(request_json("DELETE", f"{api}/sessions/{sid}/", access=third["access"]), 204)
    assert me(api, second) == 401
    assert me(api, third) == 200


def test_password_change_and_revoke_others(api: str) -> None:
    user = account()
    mine, other, another = (sign_in(api, user) for _ in range(3))
    live(api, mine, other, another)

    changed = ok(
        post_json(
            f"{api}/password/change/",
            {
                "current_password": PASSWORD,
                "new_password": NEW_PASSWORD,
                "new_password_confirm": NEW_PASSWORD,
            },
            access=mine["access"],
        )
    )
    assert me(api, other) == 401
    assert me(api, another) == 401
    renewed = {"access": str(changed.body["access"])}
    assert me(api, renewed) == 200

    user.set_password(PASSWORD)  # back, to sign in again with the helper
    user.save(update_fields=["password"])
    late = sign_in(api, user)
    live(api, late)
    ok(
        post_json(
            f"{api}/sessions/revoke-others/",
            {"password": PASSWORD},
            access=renewed["access"],
        )
    )
    assert me(api, late) == 401
    assert me(api, renewed) == 200


def test_password_reset_by_the_emailed_link(
    api: str, celery_worker: Worker, mailbox: SMTPServer
) -> None:
    user = account()
    delivered = fail_on_failed_delivery(celery_worker, user.email)
    tokens = sign_in(api, user)
    live(api, tokens)

    ok(post_json(f"{api}/password/reset/", {"email": user.email}))
    email = mailbox.wait_for(user.email, RESET_SUBJECT, check=delivered)
    token = RESET_LINK.findall(email.part("plain"))[0]
    ok(
        post_json(
            f"{api}/password/reset/confirm/",
            {
                "token": token,
                "new_password": NEW_PASSWORD,
                "new_password_confirm": NEW_PASSWORD,
            },
        )
    )

    assert me(api, tokens) == 401


def test_deletion_and_deactivation(api: str) -> None:
    deleted, deactivated = account(), account()
    gone = sign_in(api, deleted)
    benched = sign_in(api, deactivated)
    live(api, gone, benched)

    ok(
        post_json(
            f"{api}/account/delete/", {"password": PASSWORD}, access=gone["access"]
        ),
        204,
    )
    # What an admin does by unticking "active" and saving.
    deactivated.is_active = False
    deactivated.save()

    assert me(api, gone) == 401
    assert me(api, benched) == 401
    assert Session.objects.get(user=deactivated).revoked_reason == "deactivated"


def test_reuse_detection_ends_the_session_and_emails_the_owner(
    api: str, celery_worker: Worker, mailbox: SMTPServer, settings: Any
) -> None:
    settings.SIMPLE_JWT = {
        "ROTATE_REFRESH_TOKENS": True,
        "BLACKLIST_AFTER_ROTATION": True,
    }
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "REFRESH_REUSE_GRACE": 0}
    user = account()
    delivered = fail_on_failed_delivery(celery_worker, user.email)
    stolen = sign_in(api, user)
    rotated = ok(post_json(f"{api}/token/refresh/", {"refresh": stolen["refresh"]}))
    owner = {"access": str(rotated.body["access"])}
    live(api, owner)

    replay = post_json(f"{api}/token/refresh/", {"refresh": stolen["refresh"]})

    assert replay.status == 401, replay.body
    assert me(api, owner) == 401
    notice = mailbox.wait_for(user.email, REUSED_SUBJECT, check=delivered)
    assert "Firefox 128 on Ubuntu" in notice.part("plain")


def test_the_new_sign_in_email_and_its_link(
    api: str, celery_worker: Worker, mailbox: SMTPServer
) -> None:
    user = account()
    delivered = fail_on_failed_delivery(celery_worker, user.email)
    mine = sign_in(api, user)  # the first session: no email
    theirs = sign_in(api, user, ANDROID)
    live(api, mine, theirs)

    email = mailbox.wait_for(user.email, NEW_SIGN_IN_SUBJECT, check=delivered)
    text = email.part("plain")
    assert "Chrome Mobile 126 on Android" in text and "127.0.0.1" in text
    (token,) = REVOKE_LINK.findall(text)
    assert f"?token={token}" in email.part("html")
    ok(post_json(f"{api}/sessions/revoke/confirm/", {"token": token}))

    assert me(api, theirs) == 401
    assert me(api, mine) == 200
    assert [m.subject for m in mailbox.messages(user.email)] == [NEW_SIGN_IN_SUBJECT]
    assert token not in celery_worker.log()
