"""A newcomer is not locked out by refused forms, and an operator can unlock.

The plan's three registrations an hour per IP count registrations; refused forms
spend their own looser budget. ``kinwise_auth_unlock`` and the identity admin's
action clear an address's, an account's or an IP's counters in every scope, and
the account's day of failed sign-ins.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from kinwise_auth.models import EmailIdentity

from .conftest import PASSWORD, register_body

pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"


def register(api: APIClient, email: str, **changes: Any) -> int:
    response = api.post(
        AUTH + "register/", {**register_body(email), **changes}, format="json"
    )
    return int(response.status_code)


def test_refused_forms_do_not_spend_the_registration_budget(api: APIClient) -> None:
    # The newcomer of the issue: one registration, a weak password, mismatched
    # passwords, then the right form again: before, the fourth try was 429.
    answers = [
        register(api, "a@example.com"),
        register(api, "b@example.com", password="123", password_confirm="123"),
        register(api, "b@example.com", password_confirm="something-else-42"),
        register(api, "b@example.com"),
        register(api, "c@example.com"),
        register(api, "d@example.com"),
    ]

    assert answers == [201, 400, 400, 201, 201, 429]


def test_refused_forms_have_a_budget_of_their_own(api: APIClient) -> None:
    answers = [
        register(api, f"u{n}@example.com", password_confirm="mismatch-Horse-42")
        for n in range(21)
    ]

    assert answers == [400] * 20 + [429]


def test_an_address_locked_out_is_unlocked(api: APIClient, make_user: Any) -> None:
    make_user("alice@example.com")
    for _ in range(5):
        api.post(
            AUTH + "login/",
            {"email": "alice@example.com", "password": "wrong"},
            format="json",
            REMOTE_ADDR="203.0.113.1",
        )
    right = {"email": "ALICE@example.com", "password": PASSWORD}
    assert api.post(AUTH + "login/", right, format="json").status_code == 429

    call_command("kinwise_auth_unlock", "--email", "Alice@Example.com")

    assert api.post(AUTH + "login/", right, format="json").status_code == 200
    assert EmailIdentity.objects.get().failed_sign_ins == 0


def test_an_ipv6_network_is_unlocked_by_any_of_its_addresses(api: APIClient) -> None:
    def request_code(ip: str) -> int:
        response = api.post(
            AUTH + "otp/request/",
            {"email": f"{ip.replace(':', '')}@example.com"},
            format="json",
            REMOTE_ADDR=ip,
        )
        return int(response.status_code)

    spent = [request_code(f"2001:db8::{n}") for n in range(1, 5)]
    call_command("kinwise_auth_unlock", "--ip", "2001:db8::ffff")

    assert spent == [200, 200, 200, 429]
    assert request_code("2001:db8::9") == 200


def test_the_command_needs_an_address_or_an_ip() -> None:
    with pytest.raises(CommandError):
        call_command("kinwise_auth_unlock")


def test_the_admin_action_unlocks_the_selected_accounts(
    api: APIClient, make_user: Any
) -> None:
    user = make_user("alice@example.com")
    admin = make_user("root@example.com")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    for _ in range(4):
        api.post(AUTH + "otp/request/", {"email": "alice@example.com"}, format="json")
    assert (
        api.post(
            AUTH + "otp/request/", {"email": "alice@example.com"}, format="json"
        ).status_code
        == 429
    )

    response = client.post(
        reverse("admin:kinwise_auth_emailidentity_changelist"),
        {"action": "unlock", "_selected_action": [user.kinwise_identity.pk]},
        follow=True,
    )

    assert "Rate limits cleared for 1 account." in response.content.decode()
    answer = api.post(
        AUTH + "otp/request/",
        {"email": "alice@example.com"},
        format="json",
        REMOTE_ADDR="198.51.100.9",
    )
    assert answer.status_code == 200


def test_view_permission_alone_cannot_unlock(make_user: Any) -> None:
    from django.contrib.auth.models import Permission

    staff = make_user("viewer@example.com")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_emailidentity"))
    client = Client()
    client.force_login(staff)

    page = client.get(reverse("admin:kinwise_auth_emailidentity_changelist"))

    assert page.status_code == 200
    assert b'value="unlock"' not in page.content
