from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import get_hasher

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_signs_in_by_email_in_any_case(make_user: Any) -> None:
    user = make_user("alice@example.com")

    assert authenticate(email="ALICE@example.com", password=PASSWORD) == user
    assert authenticate(username="alice@example.com", password=PASSWORD) == user


def test_wrong_password_unknown_email_and_inactive_users_fail(make_user: Any) -> None:
    make_user("alice@example.com")
    make_user("pending@example.com", verified=False)
    make_user("banned@example.com", active=False)

    assert authenticate(email="alice@example.com", password="wrong") is None
    assert authenticate(email="nobody@example.com", password=PASSWORD) is None
    assert authenticate(email="pending@example.com", password=PASSWORD) is None
    assert authenticate(email="banned@example.com", password=PASSWORD) is None


def test_an_unknown_email_costs_one_password_hash(
    make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_user("alice@example.com")
    hasher = type(get_hasher())
    calls = []
    original = hasher.encode
    monkeypatch.setattr(
        hasher,
        "encode",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )

    authenticate(email="nobody@example.com", password="whatever")

    assert calls == [1]


@pytest.mark.parametrize(
    "credentials",
    [{}, {"email": None, "password": PASSWORD}, {"email": 5, "password": PASSWORD}],
)
def test_incomplete_credentials(credentials: dict[str, Any]) -> None:
    assert authenticate(**credentials) is None
