"""No endpoint lets a client set a field its serializer does not name.

Each request below succeeds with its own fields plus a hostile set of extras; the
user row then differs only in what the flow itself changes (``last_login`` on a
sign-in, ``password`` on a password change or reset), and the account's
permissions, groups and address are as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from rest_framework.test import APIClient

from kinwise_auth.models import EmailIdentity, LinkToken
from kinwise_auth.services.secrets import mint_link

from .conftest import PASSWORD, session_tokens

pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth"
NEW_PASSWORD = "another-Staple-horse-42"


def hostile_extras(group_id: int) -> dict[str, Any]:
    return {
        "is_staff": True,
        "is_superuser": True,
        "is_active": False,
        "id": 999,
        "pk": 999,
        "user_id": 999,
        "email": "intruder@example.com",
        "username": "intruder",
        "first_name": "Mallory",
        "last_name": "Intruder",
        "password": "x",
        "last_login": "2000-01-01T00:00:00Z",
        "date_joined": "2000-01-01T00:00:00Z",
        "groups": [group_id],
        "user_permissions": [1],
        "verified_at": None,
        "user": {"is_staff": True},
    }


def with_bearer(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_tokens(user)['access']}")
    return client


def login(user: Any) -> tuple[APIClient, str, dict[str, Any], set[str]]:
    body = {"email": "alice@example.com", "password": PASSWORD}
    return APIClient(), "login/", body, {"last_login"}


def otp_verify(user: Any) -> tuple[APIClient, str, dict[str, Any], set[str]]:
    api = APIClient()
    api.post(f"{AUTH}/otp/request/", {"email": "alice@example.com"}, format="json")
    match = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE)
    assert match
    body = {"email": "alice@example.com", "code": match.group(1)}
    return api, "otp/verify/", body, {"last_login"}


def password_change(user: Any) -> tuple[APIClient, str, dict[str, Any], set[str]]:
    body = {
        "current_password": PASSWORD,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    }
    return with_bearer(user), "password/change/", body, {"password"}


def password_reset_confirm(
    user: Any,
) -> tuple[APIClient, str, dict[str, Any], set[str]]:
    token = mint_link(user=user, purpose=LinkToken.Purpose.PASSWORD_RESET)
    body = {
        "token": token,
        "new_password": NEW_PASSWORD,
        "new_password_confirm": NEW_PASSWORD,
    }
    return APIClient(), "password/reset/confirm/", body, {"password"}


def email_change(user: Any) -> tuple[APIClient, str, dict[str, Any], set[str]]:
    body = {"new_email": "alice.new@example.com", "password": PASSWORD}
    return with_bearer(user), "email/change/", body, set()


REQUESTS: dict[
    str, Callable[[Any], tuple[APIClient, str, dict[str, Any], set[str]]]
] = {
    "login": login,
    "otp_verify": otp_verify,
    "password_change": password_change,
    "password_reset_confirm": password_reset_confirm,
    "email_change": email_change,
}


def snapshot(user: Any) -> dict[str, Any]:
    user = get_user_model()._default_manager.get(pk=user.pk)
    fields = {f.attname: getattr(user, f.attname) for f in user._meta.concrete_fields}
    fields["groups"] = sorted(user.groups.values_list("pk", flat=True))
    fields["permissions"] = sorted(user.user_permissions.values_list("pk", flat=True))
    return fields


@pytest.mark.parametrize("flow", list(REQUESTS))
def test_extra_fields_are_ignored(flow: str, make_user: Any) -> None:
    alice = make_user("alice@example.com")
    group = Group.objects.create(name="admins")
    client, path, body, changes = REQUESTS[flow](alice)
    before = snapshot(alice)
    users_before = get_user_model()._default_manager.count()

    # The flow's own fields win, so the request itself is a valid one.
    response = client.post(
        f"{AUTH}/{path}", {**hostile_extras(group.pk), **body}, format="json"
    )

    assert response.status_code == 200, response.content
    after = snapshot(alice)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == changes
    assert (after["is_staff"], after["is_superuser"], after["is_active"]) == (
        False,
        False,
        True,
    )
    assert after["groups"] == []
    assert get_user_model()._default_manager.count() == users_before
    assert EmailIdentity.objects.get(user=alice).email == "alice@example.com"
    if "user" in response.json():
        assert response.json()["user"]["id"] == alice.pk
        assert response.json()["user"]["email"] == "alice@example.com"
    if "password" in changes:
        assert not alice.__class__._default_manager.get(pk=alice.pk).check_password("x")
