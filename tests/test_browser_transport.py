"""The browser transport: the refresh token only in HttpOnly cookies, Django's
CSRF check on every unsafe request (DESIGN.md, "Two transports, one API")."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from kinwise_auth.models import Session

from .conftest import PASSWORD, session_tokens

# Revocations reach the cache when their transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)

APP = "/api/v1/auth/"
BROWSER = "/api/v1/auth/browser/"
REFRESH_PATH = BROWSER + "token/refresh/"
LOGOUT_PATH = BROWSER + "logout/"
ROTATE = {"ROTATE_REFRESH_TOKENS": True, "BLACKLIST_AFTER_ROTATION": True}


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


@pytest.fixture
def browser() -> APIClient:
    """A client that enforces CSRF, as a browser's requests are checked."""
    client = APIClient(enforce_csrf_checks=True)
    response = client.get(BROWSER + "csrf/")
    assert response.status_code == 200
    client.credentials(HTTP_X_CSRFTOKEN=response.json()["csrf_token"])
    return client


def sign_in(client: APIClient) -> Any:
    return client.post(
        BROWSER + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    )


def me(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return int(client.get(APP + "me/").status_code)


def test_csrf_sets_the_cookie_and_answers_its_token() -> None:
    client = APIClient(enforce_csrf_checks=True)

    response = client.get(BROWSER + "csrf/")

    assert response.status_code == 200
    assert response.cookies["csrftoken"].value
    assert response.json()["csrf_token"]


def test_a_sign_in_answers_no_refresh_token_and_sets_httponly_cookies(
    browser: APIClient, alice: Any
) -> None:
    response = sign_in(browser)

    assert response.status_code == 200, response.content
    body = response.json()
    assert "refresh" not in body and body["access"] and body["user"]
    assert "refresh" not in response.content.decode()
    for name, path in [
        ("kinwise_refresh", REFRESH_PATH),
        ("kinwise_refresh_logout", LOGOUT_PATH),
    ]:
        cookie = response.cookies[name]
        assert cookie.value.count(".") == 2  # a JWT
        assert cookie["httponly"] is True
        assert cookie["secure"] is True
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == path
        assert int(cookie["max-age"]) > 0
    assert response.cookies["kinwise_refresh"].value == (
        response.cookies["kinwise_refresh_logout"].value
    )


@pytest.mark.parametrize("path", ["login/", "token/refresh/", "logout/"])
def test_an_unsafe_request_without_the_csrf_header_is_refused(
    alice: Any, path: str
) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.get(BROWSER + "csrf/")  # the cookie, but no header

    response = client.post(
        BROWSER + path,
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    )

    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert set(response.json()) == {"detail", "code"}
    assert Session.objects.count() == 0


def test_a_foreign_origin_is_refused_a_trusted_one_is_not(
    browser: APIClient, alice: Any, settings: Any
) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["http://localhost:5173"]

    foreign = browser.post(
        BROWSER + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
        HTTP_ORIGIN="https://evil.example",
    )
    trusted = browser.post(
        BROWSER + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
        HTTP_ORIGIN="http://localhost:5173",
    )

    assert foreign.status_code == 403
    assert foreign.json()["code"] == "csrf_failed"
    assert trusted.status_code == 200


def test_refresh_reads_the_cookie_and_ignores_a_body_refresh(
    browser: APIClient, alice: Any, make_user: Any
) -> None:
    sign_in(browser)
    other = session_tokens(make_user("bob@example.com"))

    response = browser.post(REFRESH_PATH, {"refresh": other["refresh"]}, format="json")

    assert response.status_code == 200, response.content
    assert str(AccessToken(response.json()["access"])["user_id"]) == str(alice.pk)


def test_refresh_without_the_cookie_is_a_401_even_with_a_body_refresh(
    browser: APIClient, alice: Any
) -> None:
    tokens = session_tokens(alice)

    response = browser.post(REFRESH_PATH, {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_rotation_rotates_the_cookie(
    browser: APIClient, alice: Any, settings: Any
) -> None:
    settings.SIMPLE_JWT = ROTATE
    first = sign_in(browser).cookies["kinwise_refresh"].value

    response = browser.post(REFRESH_PATH, format="json")

    assert response.status_code == 200
    assert set(response.json()) == {"access"}
    rotated = response.cookies["kinwise_refresh"].value
    assert rotated != first
    assert response.cookies["kinwise_refresh_logout"].value == rotated
    # The client now holds the rotated one: a second refresh works.
    assert browser.post(REFRESH_PATH, format="json").status_code == 200


def test_a_refused_refresh_clears_the_cookies(
    browser: APIClient, alice: Any, settings: Any
) -> None:
    access = sign_in(browser).json()["access"]
    Session.objects.update(revoked_at="2026-01-01T00:00:00Z")

    response = browser.post(REFRESH_PATH, format="json")

    assert response.status_code == 401
    assert response.cookies["kinwise_refresh"].value == ""
    assert response.cookies["kinwise_refresh"]["path"] == REFRESH_PATH
    assert response.cookies["kinwise_refresh_logout"]["max-age"] == 0
    assert access


def test_logout_revokes_the_session_and_clears_the_cookies(
    browser: APIClient, alice: Any
) -> None:
    access = sign_in(browser).json()["access"]

    response = browser.post(LOGOUT_PATH, {"refresh": "ignored"}, format="json")

    assert response.status_code == 205
    assert response.cookies["kinwise_refresh"].value == ""
    assert response.cookies["kinwise_refresh_logout"].value == ""
    assert me(access) == 401
    assert Session.objects.get().revoked_reason == "logout"
    # Again, with no cookie left: nothing to end, still 205.
    assert browser.post(LOGOUT_PATH, format="json").status_code == 205


def test_ending_the_own_session_clears_the_cookies_another_does_not(
    browser: APIClient, alice: Any
) -> None:
    other = session_tokens(alice)
    access = sign_in(browser).json()["access"]
    browser.credentials(
        HTTP_AUTHORIZATION=f"Bearer {access}",
        HTTP_X_CSRFTOKEN=browser.get(BROWSER + "csrf/").json()["csrf_token"],
    )
    mine = AccessToken(access)["sid"]
    theirs = AccessToken(other["access"])["sid"]

    ended_other = browser.delete(BROWSER + f"sessions/{theirs}/")
    ended_mine = browser.delete(BROWSER + f"sessions/{mine}/")

    assert ended_other.status_code == 204
    assert "kinwise_refresh" not in ended_other.cookies
    assert ended_mine.status_code == 204
    assert ended_mine.cookies["kinwise_refresh"].value == ""


def test_a_password_change_puts_the_new_refresh_token_in_the_cookie(
    browser: APIClient, alice: Any
) -> None:
    access = sign_in(browser).json()["access"]
    browser.credentials(
        HTTP_AUTHORIZATION=f"Bearer {access}",
        HTTP_X_CSRFTOKEN=browser.get(BROWSER + "csrf/").json()["csrf_token"],
    )

    response = browser.post(
        BROWSER + "password/change/",
        {
            "current_password": PASSWORD,
            "new_password": "An0ther-long-passphrase",
            "new_password_confirm": "An0ther-long-passphrase",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert "refresh" not in response.json() and response.json()["access"]
    assert response.cookies["kinwise_refresh"].value


def test_the_cookie_settings_apply(
    browser: APIClient, alice: Any, settings: Any
) -> None:
    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "BROWSER_REFRESH_COOKIE": {"name": "rt", "samesite": "Strict"},
    }

    response = sign_in(browser)

    assert response.cookies["rt"]["samesite"] == "Strict"
    assert response.cookies["rt"]["secure"] is True  # the default kept
    assert response.cookies["rt_logout"]["path"] == LOGOUT_PATH


def test_the_app_transport_is_unchanged(alice: Any) -> None:
    response = APIClient(enforce_csrf_checks=True).post(
        APP + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["refresh"]
    assert not response.cookies


@pytest.mark.parametrize(
    "rotation", [{"ROTATE_REFRESH_TOKENS": True}, ROTATE], ids=["rotation", "blacklist"]
)
def test_a_tab_that_lost_the_refresh_race_keeps_the_new_cookie(
    browser: APIClient, alice: Any, settings: Any, rotation: dict[str, Any]
) -> None:
    """Two tabs refresh at once with one cookie; the one answered second must
    not clear the cookie the first just rotated, or the user is signed out."""
    settings.SIMPLE_JWT = rotation
    old = sign_in(browser).cookies["kinwise_refresh"].value
    assert browser.post(REFRESH_PATH, format="json").status_code == 200
    browser.cookies["kinwise_refresh"] = old  # the slower tab's request

    late = browser.post(REFRESH_PATH, format="json")

    assert late.status_code == 401
    assert "kinwise_refresh" not in late.cookies
    assert not Session.objects.get().is_revoked
