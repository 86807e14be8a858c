"""Password login, token refresh, logout and me/."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.hashers import get_hasher
from django.contrib.auth.signals import user_logged_in
from rest_framework import serializers
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from kinwise_auth.models import AuthEvent
from kinwise_auth.signals import logged_out, login_failed, login_succeeded

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "/api/v1/auth/login/"
REFRESH = "/api/v1/auth/token/refresh/"
LOGOUT = "/api/v1/auth/logout/"
ME = "/api/v1/auth/me/"


def login(
    api: Any, email: str = "alice@example.com", password: str = PASSWORD, **kw: Any
) -> Any:
    return api.post(LOGIN, {"email": email, "password": password}, format="json", **kw)


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


@pytest.fixture
def tokens(api: Any, alice: Any) -> dict[str, str]:
    response = login(api)
    assert response.status_code == 200
    return dict(response.json())


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


class ShortUser(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="pk")


def issue_with_tenant(user: Any, *, sid: str) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)
    refresh["sid"] = sid
    refresh["tenant"] = "acme"
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


# --- login/ ----------------------------------------------------------------


def test_login_returns_tokens_and_user(api: Any, alice: Any) -> None:
    received: list[Any] = []
    user_logged_in.connect(
        lambda **kw: received.append(kw), weak=False, dispatch_uid="t"
    )
    login_succeeded.connect(
        lambda **kw: received.append(kw), weak=False, dispatch_uid="t"
    )
    try:
        response = login(api, email="Alice@EXAMPLE.com")
    finally:
        user_logged_in.disconnect(dispatch_uid="t")
        login_succeeded.disconnect(dispatch_uid="t")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    assert body["user"] == {
        "id": alice.pk,
        "email": "alice@example.com",
        "first_name": "",
        "last_name": "",
    }
    alice.refresh_from_db()
    assert alice.last_login is not None
    assert len(received) == 2
    sid = str(AccessToken(body["access"])["sid"])
    assert {"method": "password", "session": sid} in [r.get("extra") for r in received]


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("alice@example.com", "wrong-password-1"),
        ("nobody@example.com", PASSWORD),
        ("banned@example.com", PASSWORD),
    ],
)
def test_every_wrong_pair_is_invalid_credentials(
    api: Any, alice: Any, make_user: Any, email: str, password: str
) -> None:
    make_user("banned@example.com", active=False)
    received: list[Any] = []
    login_failed.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="t")
    try:
        response = login(api, email=email, password=password)
    finally:
        login_failed.disconnect(dispatch_uid="t")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid email or password.",
        "code": "invalid_credentials",
    }
    assert received[0]["extra"] == {
        "method": "password",
        "reason": "invalid_credentials",
    }


def test_pending_account_with_the_right_password_is_403(
    api: Any, make_user: Any
) -> None:
    make_user("pending@example.com", verified=False)

    right = login(api, email="pending@example.com")
    wrong = login(api, email="pending@example.com", password="wrong-password-1")

    assert right.status_code == 403
    assert right.json()["code"] == "email_not_verified"
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "invalid_credentials"


def test_unknown_email_costs_a_password_hash(
    api: Any, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = type(get_hasher())
    calls: list[int] = []
    original_encode = hasher.encode
    monkeypatch.setattr(
        hasher,
        "encode",
        lambda self, *a, **k: calls.append(1) or original_encode(self, *a, **k),
    )

    login(api, email="nobody@example.com")
    unknown = len(calls)
    calls.clear()
    login(api, email="alice@example.com", password="wrong-password-1")

    assert unknown == len(calls) == 1


def test_login_failures_are_limited_per_account_not_successes(
    api: Any, alice: Any
) -> None:
    for n in range(5):
        login(api, password="wrong-password-1", REMOTE_ADDR=f"10.8.0.{n}")

    locked = login(api, REMOTE_ADDR="10.8.0.99")

    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"


def test_successful_logins_do_not_spend_the_account_budget(
    api: Any, alice: Any
) -> None:
    for n in range(8):
        assert login(api, REMOTE_ADDR=f"10.9.0.{n}").status_code == 200


def test_login_is_limited_per_ip(api: Any, alice: Any) -> None:
    for n in range(10):
        login(api, email=f"u{n}@example.com")

    assert login(api).status_code == 429


class AllowInactiveBackend:
    """A host backend that (wrongly) returns inactive users."""

    def authenticate(
        self, request: Any, email: str | None = None, password: str | None = None
    ) -> Any:
        from kinwise_auth.services.identities import find_identity

        identity = find_identity(email or "")
        if identity and identity.user.check_password(password):
            return identity.user
        return None

    def get_user(self, user_id: Any) -> Any:
        return None


def test_a_host_backend_returning_an_inactive_user_gets_no_token(
    api: Any, make_user: Any, settings: Any
) -> None:
    settings.AUTHENTICATION_BACKENDS = [f"{__name__}.AllowInactiveBackend"]
    make_user("banned@example.com", active=False)
    make_user("alice@example.com")

    banned = login(api, email="banned@example.com")
    active = login(api, email="alice@example.com")

    assert banned.status_code == 400
    assert banned.json()["code"] == "invalid_credentials"
    assert active.status_code == 200  # the backend is used


# --- token/refresh/ -------------------------------------------------------------


def test_refresh_returns_an_access_token(api: Any, tokens: dict[str, str]) -> None:
    response = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 200
    assert set(response.json()) == {"access"}


def test_refresh_rotates_when_simplejwt_does(
    api: Any, tokens: dict[str, str], settings: Any
) -> None:
    settings.SIMPLE_JWT = {
        "ROTATE_REFRESH_TOKENS": True,
        "BLACKLIST_AFTER_ROTATION": True,
    }

    first = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    replay = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    second = api.post(REFRESH, {"refresh": first.json()["refresh"]}, format="json")

    assert first.status_code == 200
    assert set(first.json()) == {"access", "refresh"}
    assert replay.status_code == 401
    assert replay.json()["code"] == "token_not_valid"
    assert second.status_code == 200


@pytest.mark.parametrize("change", ["deactivate", "delete"])
def test_refresh_for_an_inactive_or_deleted_user_is_401(
    api: Any, alice: Any, tokens: dict[str, str], change: str
) -> None:
    if change == "delete":
        alice.delete()
    else:
        alice.is_active = False
        alice.save()

    response = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Token is invalid or expired.",
        "code": "token_not_valid",
    }


def test_refresh_of_a_junk_token_is_401(api: Any) -> None:
    response = api.post(REFRESH, {"refresh": "junk"}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


@pytest.mark.parametrize(
    "body", [{"refresh": ""}, {"refresh": 5}, {}, {"refresh": ["a"]}]
)
def test_refresh_of_a_malformed_body_is_400(api: Any, body: Any) -> None:
    response = api.post(REFRESH, body, format="json")

    assert response.status_code == 400
    assert "refresh" in response.json() or "non_field_errors" in response.json()


def test_an_access_token_is_not_a_refresh_token(
    api: Any, tokens: dict[str, str]
) -> None:
    response = api.post(REFRESH, {"refresh": tokens["access"]}, format="json")

    assert response.status_code == 401


# --- logout/ --------------------------------------------------------------


def test_logout_blacklists_and_is_idempotent(
    api: Any, alice: Any, tokens: dict[str, str]
) -> None:
    received: list[Any] = []
    logged_out.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="t")
    try:
        first = api.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json")
        again = api.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json")
    finally:
        logged_out.disconnect(dispatch_uid="t")
    refresh = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")

    assert first.status_code == again.status_code == 205
    assert refresh.status_code == 401
    assert [r["user"] for r in received] == [alice]
    assert AuthEvent.objects.filter(event_type="logged_out").count() == 1


@pytest.mark.parametrize("token", ["junk", "a.b.c"])
def test_logout_with_an_invalid_token_is_400(api: Any, token: str) -> None:
    response = api.post(LOGOUT, {"refresh": token}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"


def test_logout_with_an_access_token_is_400(api: Any, tokens: dict[str, str]) -> None:
    response = api.post(LOGOUT, {"refresh": tokens["access"]}, format="json")

    assert response.status_code == 400


def test_logout_with_a_forged_token_is_400(api: Any, alice: Any) -> None:
    forged = RefreshToken.for_user(alice)
    text = str(forged)
    tampered = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")

    assert api.post(LOGOUT, {"refresh": tampered}, format="json").status_code == 400


# --- me/ ------------------------------------------------------------------


def test_me_returns_the_user(alice: Any, tokens: dict[str, str]) -> None:
    response = bearer(tokens["access"]).get(ME)

    assert response.status_code == 200
    assert response.json()["email"] == "alice@example.com"


def test_me_without_a_token_is_401_despite_session_auth(api: Any, alice: Any) -> None:
    api.force_login(alice)  # a session cookie: the host's default auth, ignored

    response = api.get(ME)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_me_with_a_bad_token_is_401(alice: Any) -> None:
    response = bearer("junk").get(ME)

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    assert isinstance(response.json()["detail"], str)


def test_me_for_a_deactivated_user_is_401(alice: Any, tokens: dict[str, str]) -> None:
    alice.is_active = False
    alice.save()

    assert bearer(tokens["access"]).get(ME).status_code == 401


def test_me_uses_the_configured_serializer(
    alice: Any, tokens: dict[str, str], settings: Any
) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "USER_SERIALIZER": f"{__name__}.ShortUser",
    }

    assert bearer(tokens["access"]).get(ME).json() == {"id": alice.pk}


def test_the_token_issuer_hook_adds_claims(api: Any, alice: Any, settings: Any) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "TOKEN_ISSUER": f"{__name__}.issue_with_tenant",
    }

    access = login(api).json()["access"]

    assert RefreshToken(login(api).json()["refresh"])["tenant"] == "acme"
    assert access


def test_logout_is_limited_per_account(api: Any, alice: Any) -> None:
    refresh_tokens = [
        login(api, REMOTE_ADDR=f"10.10.0.{n}").json()["refresh"] for n in range(11)
    ]
    answers = [
        api.post(LOGOUT, {"refresh": token}, format="json", REMOTE_ADDR=f"10.11.0.{n}")
        for n, token in enumerate(refresh_tokens)
    ]

    assert [a.status_code for a in answers] == [205] * 10 + [429]


def test_a_pending_account_costs_one_hash_like_an_unknown_address(
    api: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user("pending@example.com", verified=False)
    hasher = type(get_hasher())
    calls: list[int] = []
    original = hasher.encode
    monkeypatch.setattr(
        hasher,
        "encode",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )
    counts = {}
    for label, email, password in [
        ("pending, wrong", "pending@example.com", "wrong-password-1"),
        ("pending, right", "pending@example.com", PASSWORD),
        ("unknown", "nobody@example.com", PASSWORD),
    ]:
        calls.clear()
        response = login(api, email=email, password=password)
        counts[label] = (len(calls), response.status_code)

    assert counts == {
        "pending, wrong": (1, 400),
        "pending, right": (1, 403),
        "unknown": (1, 400),
    }


def test_without_the_package_backend_a_pending_account_is_still_recognised(
    api: Any, make_user: Any, settings: Any
) -> None:
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
    make_user("pending@example.com", verified=False)

    assert login(api, email="pending@example.com").status_code == 403
