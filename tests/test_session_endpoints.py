"""sessions/, sessions/<id>/, sessions/revoke-others/ and reauthenticate/."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from kinwise_auth.models import AuthEvent, Session

from .conftest import PASSWORD

# Revocations reach the cache when their transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"
FIREFOX = (
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
)


def sign_in(email: str = "alice@example.com", **headers: Any) -> dict[str, str]:
    response = APIClient().post(
        AUTH + "login/",
        {"email": email, "password": PASSWORD},
        format="json",
        **headers,
    )
    assert response.status_code == 200, response.content
    return dict(response.json())


def bearer(tokens: dict[str, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    return client


def sid(tokens: dict[str, str]) -> str:
    return str(AccessToken(tokens["access"])["sid"])


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


def test_the_list_shows_the_callers_live_sessions(alice: Any, make_user: Any) -> None:
    make_user("bob@example.com")
    mine = sign_in(HTTP_USER_AGENT=FIREFOX, REMOTE_ADDR="198.51.100.7")
    other = sign_in()
    sign_in("bob@example.com")
    Session.objects.filter(public_id=sid(other)).update(
        last_used_at=timezone.now() - timedelta(hours=1)
    )

    listed = bearer(mine).get(AUTH + "sessions/").json()

    assert [s["id"] for s in listed] == [sid(mine), sid(other)]
    assert listed[0]["current"] is True and listed[1]["current"] is False
    assert listed[0]["device"] == "Firefox 128 on Ubuntu"
    assert listed[0]["ip"] == "198.51.100.7"
    assert listed[0]["method"] == "password"
    assert set(listed[0]) == {
        "id",
        "device",
        "ip",
        "created_at",
        "last_used_at",
        "method",
        "current",
    }


def test_ending_a_session_refuses_its_tokens(alice: Any) -> None:
    mine, other = sign_in(), sign_in()

    response = bearer(mine).delete(AUTH + f"sessions/{sid(other)}/")

    assert response.status_code == 204
    assert bearer(other).get(AUTH + "me/").status_code == 401
    refreshed = APIClient().post(
        AUTH + "token/refresh/", {"refresh": other["refresh"]}, format="json"
    )
    assert refreshed.status_code == 401
    assert bearer(mine).get(AUTH + "me/").status_code == 200
    assert AuthEvent.objects.filter(event_type="session_revoked").count() == 1


def test_ending_the_callers_own_session_signs_it_out(alice: Any) -> None:
    mine = sign_in()

    assert bearer(mine).delete(AUTH + f"sessions/{sid(mine)}/").status_code == 204
    assert bearer(mine).get(AUTH + "me/").status_code == 401


@pytest.mark.parametrize("whose", ["another user's", "unknown", "malformed", "ended"])
def test_a_session_that_is_not_the_callers_is_not_found(
    alice: Any, make_user: Any, whose: str
) -> None:
    make_user("bob@example.com")
    mine, spare = sign_in(), sign_in()
    target = {
        "another user's": sid(sign_in("bob@example.com")),
        "unknown": str(uuid.uuid4()),
        "malformed": "not-a-session",
        "ended": sid(spare),
    }[whose]
    if whose == "ended":
        bearer(mine).delete(AUTH + f"sessions/{target}/")

    response = bearer(mine).delete(AUTH + f"sessions/{target}/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No such session.", "code": "not_found"}
    assert Session.objects.filter(revoked_reason="user").count() == (
        1 if whose == "ended" else 0
    )


def test_revoking_the_others_with_the_password(alice: Any) -> None:
    mine, first, second = sign_in(), sign_in(), sign_in()

    response = bearer(mine).post(
        AUTH + "sessions/revoke-others/", {"password": PASSWORD}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"revoked": 2}
    assert bearer(first).get(AUTH + "me/").status_code == 401
    assert bearer(second).get(AUTH + "me/").status_code == 401
    assert bearer(mine).get(AUTH + "me/").status_code == 200


def test_revoking_the_others_needs_a_proof(alice: Any) -> None:
    mine, other = sign_in(), sign_in()
    client = bearer(mine)

    refused = client.post(AUTH + "sessions/revoke-others/", {}, format="json")
    wrong = client.post(
        AUTH + "sessions/revoke-others/", {"password": "nope"}, format="json"
    )

    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Confirm it is you first.",
        "code": "reauthentication_required",
        "methods": ["password", "email_code"],
    }
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "invalid_credentials"
    assert bearer(other).get(AUTH + "me/").status_code == 200


def test_a_recent_reauthentication_is_the_proof(alice: Any) -> None:
    mine, other = sign_in(), sign_in()
    client = bearer(mine)

    proved = client.post(
        AUTH + "reauthenticate/", {"password": PASSWORD}, format="json"
    )
    revoked = client.post(AUTH + "sessions/revoke-others/", {}, format="json")

    assert proved.status_code == 200
    assert "reauthenticated_until" in proved.json()
    assert revoked.json() == {"revoked": 1}
    assert bearer(other).get(AUTH + "me/").status_code == 401


def test_a_reauthentication_lasts_its_timeout_and_its_session_only(
    alice: Any,
) -> None:
    mine, other = sign_in(), sign_in()
    bearer(other).post(AUTH + "reauthenticate/", {"password": PASSWORD}, format="json")
    # The other session's proof is not this one's.
    assert (
        bearer(mine)
        .post(AUTH + "sessions/revoke-others/", {}, format="json")
        .status_code
        == 403
    )
    bearer(mine).post(AUTH + "reauthenticate/", {"password": PASSWORD}, format="json")
    Session.objects.filter(public_id=sid(mine)).update(
        reauthenticated_at=timezone.now() - timedelta(minutes=6)
    )

    late = bearer(mine).post(AUTH + "sessions/revoke-others/", {}, format="json")

    assert late.status_code == 403


def test_a_wrong_password_does_not_reauthenticate(alice: Any) -> None:
    mine = sign_in()

    response = bearer(mine).post(
        AUTH + "reauthenticate/", {"password": "nope"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"
    assert Session.objects.get().reauthenticated_at is None
    assert AuthEvent.objects.filter(event_type="reauthentication_failed").exists()
