"""Sessions: one per sign-in, a refresh-token family each, revocation that reaches
access tokens (DESIGN.md, "Sessions and token transport")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from kinwise_auth.models import AuthEvent, OutboxEmail, Session
from kinwise_auth.services import session_state

from .conftest import PASSWORD

# Revocations reach the cache when their transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"
FIREFOX = (
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
)
ROTATE = {"ROTATE_REFRESH_TOKENS": True, "BLACKLIST_AFTER_ROTATION": True}
# Rotation alone, and with the blacklist (the recommended setting), which refuses
# the rotated-away token before its session is asked: a replay is caught either way.
ROTATIONS = [{"ROTATE_REFRESH_TOKENS": True}, ROTATE]


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


def sign_in(api: APIClient, **headers: Any) -> dict[str, str]:
    response = api.post(
        AUTH + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
        **headers,
    )
    assert response.status_code == 200, response.content
    return dict(response.json())


def refresh(api: APIClient, token: str) -> Any:
    return api.post(AUTH + "token/refresh/", {"refresh": token}, format="json")


def me(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return int(client.get(AUTH + "me/").status_code)


def test_a_sign_in_opens_a_session_both_tokens_name(api: APIClient, alice: Any) -> None:
    tokens = sign_in(api, HTTP_USER_AGENT=FIREFOX, REMOTE_ADDR="198.51.100.7")

    session = Session.objects.get()
    assert session.user == alice
    assert session.method == "password"
    assert session.device == "Firefox 128 on Ubuntu"
    assert session.first_ip == session.last_ip == "198.51.100.7"
    refresh_token = RefreshToken(tokens["refresh"])
    assert refresh_token["sid"] == str(session.public_id)
    assert AccessToken(tokens["access"])["sid"] == str(session.public_id)
    assert session.refresh_jti == refresh_token["jti"]
    assert me(tokens["access"]) == 200


def test_rotation_moves_the_live_token(
    api: APIClient, alice: Any, settings: Any
) -> None:
    settings.SIMPLE_JWT = ROTATE
    first = sign_in(api)

    second = refresh(api, first["refresh"]).json()

    session = Session.objects.get()
    assert session.refresh_jti == RefreshToken(second["refresh"])["jti"]
    assert session.previous_jti == RefreshToken(first["refresh"], verify=False)["jti"]
    assert refresh(api, second["refresh"]).status_code == 200


@pytest.mark.parametrize("rotation", ROTATIONS, ids=["rotation", "blacklist"])
def test_a_replay_within_the_grace_is_refused_without_revoking(
    api: APIClient, alice: Any, settings: Any, rotation: dict[str, Any]
) -> None:
    settings.SIMPLE_JWT = rotation
    first = sign_in(api)
    second = refresh(api, first["refresh"]).json()

    replay = refresh(api, first["refresh"])  # another tab, a moment later

    assert replay.status_code == 401
    assert replay.json()["code"] == "token_not_valid"
    assert not Session.objects.get().is_revoked
    assert refresh(api, second["refresh"]).status_code == 200
    assert me(second["access"]) == 200


@pytest.mark.parametrize("rotation", ROTATIONS, ids=["rotation", "blacklist"])
def test_a_replay_after_the_grace_revokes_the_session_and_tells_the_owner(
    api: APIClient, alice: Any, settings: Any, broker: Any, rotation: dict[str, Any]
) -> None:
    settings.SIMPLE_JWT = rotation
    first = sign_in(api, HTTP_USER_AGENT=FIREFOX)
    second = refresh(api, first["refresh"]).json()
    Session.objects.update(rotated_at=timezone.now() - timedelta(seconds=11))

    replay = refresh(api, first["refresh"])  # a stolen copy

    assert replay.status_code == 401
    session = Session.objects.get()
    assert session.is_revoked and session.revoked_reason == "reuse"
    # The whole family is dead, the thief's copy and the owner's alike.
    assert refresh(api, second["refresh"]).status_code == 401
    assert me(second["access"]) == 401
    assert AuthEvent.objects.filter(event_type="session_reused").count() == 1
    revoked = AuthEvent.objects.get(event_type="session_revoked")
    assert revoked.extra == {"sessions": [str(session.public_id)], "reason": "reuse"}
    notice = OutboxEmail.objects.get(kind=OutboxEmail.Kind.SESSION_REUSED)
    assert notice.recipient == "alice@example.com"
    broker.drain()
    assert "Firefox 128 on Ubuntu" in mail.outbox[-1].body


def test_without_rotation_a_revoked_session_refreshes_no_more(
    api: APIClient, alice: Any
) -> None:
    tokens = sign_in(api)
    assert refresh(api, tokens["refresh"]).status_code == 200

    Session.objects.update(revoked_at=timezone.now())

    assert refresh(api, tokens["refresh"]).status_code == 401


def test_logout_refuses_the_access_token_at_once(api: APIClient, alice: Any) -> None:
    tokens = sign_in(api)
    other = sign_in(api)
    assert me(tokens["access"]) == 200

    api.post(AUTH + "logout/", {"refresh": tokens["refresh"]}, format="json")

    assert me(tokens["access"]) == 401
    assert me(other["access"]) == 200  # another session of the same user


def change_password(access: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    new = "another-Staple-lamp-42"
    body = {
        "current_password": PASSWORD,
        "new_password": new,
        "new_password_confirm": new,
    }
    return client.post(AUTH + "password/change/", body, format="json")


def test_a_password_change_ends_every_other_session(api: APIClient, alice: Any) -> None:
    mine, other = sign_in(api), sign_in(api)

    renewed = change_password(mine["access"]).json()

    assert me(other["access"]) == 401
    assert refresh(api, other["refresh"]).status_code == 401
    assert me(mine["access"]) == 200  # the caller's session goes on
    assert me(renewed["access"]) == 200
    assert refresh(api, renewed["refresh"]).status_code == 200
    live = Session.objects.filter(revoked_at=None)
    assert [str(s.public_id) for s in live] == [AccessToken(renewed["access"])["sid"]]


def test_a_password_reset_ends_every_session(
    api: APIClient, alice: Any, broker: Any
) -> None:
    tokens = sign_in(api)
    api.post(AUTH + "password/reset/", {"email": "alice@example.com"}, format="json")
    broker.drain()
    token = mail.outbox[-1].body.split("token=")[1].split()[0]
    new = "another-Staple-lamp-42"
    body = {"token": token, "new_password": new, "new_password_confirm": new}

    assert (
        api.post(AUTH + "password/reset/confirm/", body, format="json").status_code
        == 200
    )

    assert me(tokens["access"]) == 401
    assert Session.objects.get().revoked_reason == "password_reset"


def test_deactivation_by_an_admin_ends_every_session(
    api: APIClient, alice: Any
) -> None:
    tokens = sign_in(api)

    alice.is_active = False
    alice.save()  # as the admin's change form saves it

    assert me(tokens["access"]) == 401
    assert Session.objects.get().revoked_reason == "deactivated"


def test_the_cache_answers_and_the_database_answers_when_it_fails(
    api: APIClient, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = sign_in(api)
    sid = AccessToken(tokens["access"])["sid"]
    Session.objects.update(revoked_at=timezone.now())  # behind the cache's back

    assert me(tokens["access"]) == 200  # the cache says live, for LIVE_FOR at most
    cache.delete(f"kinwise_auth:session:{sid}")
    assert me(tokens["access"]) == 401  # a miss asks the database

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    monkeypatch.setattr(session_state, "_cache", broken)
    assert me(tokens["access"]) == 401


def test_a_token_without_a_session_is_refused(alice: Any) -> None:
    assert me(str(RefreshToken.for_user(alice).access_token)) == 401


def issue_without_sid(user: Any, *, sid: str) -> dict[str, str]:
    refresh_token = RefreshToken.for_user(user)
    return {"access": str(refresh_token.access_token), "refresh": str(refresh_token)}


def test_an_issuer_that_drops_the_session_id_is_a_configuration_error(
    api: APIClient, alice: Any, settings: Any
) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "TOKEN_ISSUER": f"{__name__}.issue_without_sid",
    }

    with pytest.raises(ImproperlyConfigured, match="sid"):
        sign_in(api)
