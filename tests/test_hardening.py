"""The attacks an audit of a running example project reproduced, as tests.

Each test replays one attack over the API (eager Celery, locmem mail; PostgreSQL
in tox) and asserts what must hold instead. The numbers are the items of the
hardening issue; docs/security.md maps each to its test. The concurrent ones (the
login budget, refresh against password changes) run against a threaded server in
``tests/integration/test_hardening_races.py``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from kinwise_auth import maintenance
from kinwise_auth.models import AuthEvent, EmailIdentity, OutboxEmail

from .conftest import PASSWORD, register_body

pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"
ATTACKER_PASSWORD = "attacker-Owns-this-77"
VICTIM = "victim@example.com"


def link(message: Any, path: str = "verify-email") -> str:
    match = re.search(rf"{path}\?token=([\w\-]+)", message.body)
    assert match, message.body
    return match.group(1)


def login(api: APIClient, email: str, password: str, **extra: Any) -> Any:
    return api.post(
        AUTH + "login/", {"email": email, "password": password}, format="json", **extra
    )


# --- 1. Pre-account hijack ----------------------------------------------------------


def test_1_a_pending_registration_is_replaced_by_the_victims(api: APIClient) -> None:
    phishing = {
        "first_name": "Call +1-555-0100 now",
        "last_name": "https://evil.example",
    }
    api.post(
        AUTH + "register/",
        {
            "email": "VICTIM@example.com",
            "password": ATTACKER_PASSWORD,
            "password_confirm": ATTACKER_PASSWORD,
            **phishing,
        },
        format="json",
    )
    attackers_link = link(mail.outbox[-1])

    response = api.post(
        AUTH + "register/", register_body(VICTIM, first_name="Vic"), format="json"
    )

    assert response.status_code == 201
    assert response.json()["email"] == VICTIM
    victims_mail = mail.outbox[-1]
    assert victims_mail.to == [VICTIM]  # the newest spelling wins
    # A replaced registration says so, should the newest not be the owner's.
    assert "registered again" not in mail.outbox[0].body
    assert "registered again" in victims_mail.body
    assert "registered again" in victims_mail.alternatives[0][0]
    for part in (victims_mail.subject, victims_mail.body):
        assert "evil.example" not in part and "555" not in part
    # Every link minted before is dead; the fresh one verifies the victim's account.
    dead = api.post(AUTH + "verify-email/", {"token": attackers_link}, format="json")
    assert dead.json()["code"] == "invalid_token"
    verified = api.post(
        AUTH + "verify-email/", {"token": link(victims_mail)}, format="json"
    )
    assert verified.status_code == 200
    # The attacker's password is gone; the victim's works; the names are theirs.
    assert login(api, VICTIM, ATTACKER_PASSWORD).json()["code"] == "invalid_credentials"
    signed_in = login(api, VICTIM, PASSWORD)
    assert signed_in.status_code == 200
    user = get_user_model()._default_manager.get()
    assert getattr(user, user.get_email_field_name()) == VICTIM
    if hasattr(user, "first_name"):
        assert (user.first_name, user.last_name) == ("Vic", "")
    assert AuthEvent.objects.filter(event_type="pending_registration_replaced").exists()


def test_1_every_later_link_of_a_replaced_registration_warns(api: APIClient) -> None:
    # The victim registers, the attacker registers again, the victim (whose link
    # died) asks for a new one: that email warns too, not only the replacing one.
    api.post(AUTH + "register/", register_body(VICTIM), format="json")
    api.post(
        AUTH + "register/",
        register_body(
            VICTIM, password=ATTACKER_PASSWORD, password_confirm=ATTACKER_PASSWORD
        ),
        format="json",
    )
    mail.outbox.clear()

    api.post(AUTH + "resend-verification/", {"email": VICTIM}, format="json")

    (resent,) = mail.outbox
    assert "registered again" in resent.body
    assert "registered again" in resent.alternatives[0][0]


def test_1_the_replacement_works_with_enumeration_prevention_off(
    api: APIClient, settings: Any
) -> None:
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "PREVENT_ENUMERATION": False}
    first = api.post(
        AUTH + "register/",
        register_body(
            VICTIM, password=ATTACKER_PASSWORD, password_confirm=ATTACKER_PASSWORD
        ),
        format="json",
    )

    second = api.post(AUTH + "register/", register_body(VICTIM), format="json")

    assert second.status_code == 201
    assert second.json()["user_id"] == first.json()["user_id"]
    assert get_user_model()._default_manager.get().check_password(PASSWORD)


def test_1_a_403_counts_against_the_login_limit(api: APIClient, make_user: Any) -> None:
    # Polling login/ with the attacker's password told when the victim verified:
    # a pending account's correct password must spend the budget like a wrong one.
    make_user(VICTIM, verified=False)
    answers = [login(api, VICTIM, PASSWORD).status_code for _ in range(6)]

    assert answers == [403] * 5 + [429]


def test_1_a_successful_sign_in_does_not_spend_the_failure_budget(
    api: APIClient, make_user: Any
) -> None:
    make_user(VICTIM)
    answers = [login(api, VICTIM, PASSWORD).status_code for _ in range(8)]

    assert answers == [200] * 8


def test_1_pending_accounts_past_their_lifetime_are_purged(make_user: Any) -> None:
    stale = make_user("stale@example.com", verified=False)
    fresh = make_user("fresh@example.com", verified=False)
    verified = make_user("kept@example.com")
    banned = make_user("banned@example.com", active=False)
    eight_days_ago = timezone.now() - timedelta(days=8)
    EmailIdentity.objects.exclude(user=fresh).update(created_at=eight_days_ago)

    purged = maintenance.purge_expired()

    assert purged["pending_accounts"] == 1
    remaining = set(get_user_model()._default_manager.values_list("pk", flat=True))
    assert remaining == {fresh.pk, verified.pk, banned.pk}
    assert stale.pk not in remaining
    # The address is free again.
    assert not EmailIdentity.objects.filter(email_normalized="stale@example.com")


def test_1_registering_again_restarts_the_pending_lifetime(
    api: APIClient, make_user: Any
) -> None:
    make_user(VICTIM, verified=False)
    EmailIdentity.objects.update(created_at=timezone.now() - timedelta(days=8))

    api.post(AUTH + "register/", register_body(VICTIM), format="json")

    assert maintenance.purge_expired()["pending_accounts"] == 0


# --- 2 and 3. Look-alikes and one mailbox, many accounts ------------------------------


@pytest.mark.parametrize(
    "squat", ["\u017fam.kirk@example.com", "sam.\u212airk@example.com"]
)
def test_2_a_lookalike_cannot_squat_the_real_owners_key(
    api: APIClient, squat: str
) -> None:
    refused = api.post(AUTH + "register/", register_body(squat), format="json")
    owner = api.post(
        AUTH + "register/", register_body("sam.kirk@example.com"), format="json"
    )

    assert refused.status_code == 400 and "email" in refused.json()
    assert owner.status_code == 201
    assert [m.to for m in mail.outbox] == [["sam.kirk@example.com"]]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('"dana"@example.com', "dana@example.com"),
        ("cm@xn--exmple-cua.com", "cm@ex\u00e4mple.com"),
        ("cm@EX\u00c4MPLE.com", "cm@xn--exmple-cua.com"),
    ],
)
def test_3_spellings_of_one_mailbox_are_one_account(
    api: APIClient, first: str, second: str
) -> None:
    for email in (first, second):
        assert (
            api.post(
                AUTH + "register/", register_body(email), format="json"
            ).status_code
            == 201
        )

    (identity,) = EmailIdentity.objects.all()
    assert get_user_model()._default_manager.count() == 1
    # Mail always goes to a spelling that normalises to the key.
    from kinwise_auth.normalization import normalize_email

    for message in mail.outbox:
        assert normalize_email(message.to[0]) == identity.email_normalized


@pytest.mark.parametrize(
    "dotted",
    ["jane@example.com.", "jane@example.com\u3002", "jane@example.com\uff0e"],
)
def test_3_a_trailing_dot_is_not_a_second_mailbox(api: APIClient, dotted: str) -> None:
    api.post(AUTH + "register/", register_body("jane@example.com"), format="json")

    response = api.post(AUTH + "register/", register_body(dotted), format="json")

    assert response.status_code == 400
    assert EmailIdentity.objects.count() == 1


@pytest.mark.parametrize(
    "invisible",
    ["cm@exa\u00admple.com", "cm@exa\u200bmple.com", "cm@exam\u2060ple.com"],
)
def test_3_invisible_characters_are_refused(api: APIClient, invisible: str) -> None:
    response = api.post(AUTH + "register/", register_body(invisible), format="json")

    assert response.status_code == 400
    assert response.json() == {"email": ["This address contains invisible characters."]}
    assert not EmailIdentity.objects.exists()


def test_3_twelve_spellings_of_one_mailbox_share_its_email_budget(
    api: APIClient,
) -> None:
    spellings = [
        "dana@example.com",
        '"dana"@example.com',
        "DANA@example.com",
        "Dana@EXAMPLE.com",
    ] * 3
    answers = [
        api.post(
            AUTH + "register/",
            register_body(email),
            format="json",
            REMOTE_ADDR=f"198.51.100.{n}",
        ).status_code
        for n, email in enumerate(spellings)
    ]

    assert answers == [201] * 3 + [429] * 9
    assert len(mail.outbox) == 3
    assert EmailIdentity.objects.count() == 1


# --- 4. email/change/ must not tell a taken address from a free one -----------------


@pytest.mark.parametrize("target_taken", [True, False])
def test_4_a_change_request_retires_earlier_links_whatever_the_target(
    api: APIClient, make_user: Any, target_taken: bool
) -> None:
    make_user("alice@example.com")
    if target_taken:
        make_user("target@example.com")
    client = APIClient()
    access = login(api, "alice@example.com", PASSWORD).json()["access"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    body = {"password": PASSWORD}
    client.post(
        AUTH + "email/change/", {**body, "new_email": "mine@example.com"}, format="json"
    )
    first_link = link(mail.outbox[-1], "confirm-email-change")
    client.post(
        AUTH + "email/change/",
        {**body, "new_email": "target@example.com"},
        format="json",
    )

    response = api.post(
        AUTH + "email/change/confirm/", {"token": first_link}, format="json"
    )

    # Taken or free, L1 died with the second request: the same answer.
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"


def test_4_a_pending_squatter_does_not_block_an_email_change(
    api: APIClient, make_user: Any
) -> None:
    # Re-registering every few days would otherwise keep an address from anyone
    # moving to it: a pending account holds it for nobody.
    alice = make_user("alice@example.com")
    squatter = make_user("target@example.com", verified=False)
    client = APIClient()
    access = login(api, "alice@example.com", PASSWORD).json()["access"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    client.post(
        AUTH + "email/change/",
        {"password": PASSWORD, "new_email": "target@example.com"},
        format="json",
    )
    change_link = link(mail.outbox[-1], "confirm-email-change")

    response = api.post(
        AUTH + "email/change/confirm/", {"token": change_link}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["email"] == "target@example.com"
    assert not get_user_model()._default_manager.filter(pk=squatter.pk).exists()
    (identity,) = EmailIdentity.objects.filter(email_normalized="target@example.com")
    assert identity.user_id == alice.pk


# --- 5. The per-IP limit comes before the body is parsed ----------------------------


def test_5_hostile_bodies_spend_the_ip_budget_before_parsing(api: APIClient) -> None:
    deep = '{"a":' * 1500 + "1" + "}" * 1500
    answers = [
        api.post(
            AUTH + "otp/request/", deep, content_type="application/json"
        ).status_code
        for _ in range(8)
    ]

    assert answers == [400] * 3 + [429] * 5


# --- 8. A used link shows nobody's data --------------------------------------------


def test_8_a_used_verification_link_answers_without_personal_data(
    api: APIClient,
) -> None:
    api.post(AUTH + "register/", register_body("old@example.com"), format="json")
    token = link(mail.outbox[-1])
    api.post(AUTH + "verify-email/", {"token": token}, format="json")
    identity = EmailIdentity.objects.get()
    identity.email = identity.email_normalized = "moved@example.com"
    identity.save()

    replay = api.post(AUTH + "verify-email/", {"token": token}, format="json")

    assert replay.status_code == 200
    assert replay.json() == {"message": "Email already verified"}
    assert b"example.com" not in replay.content


# --- 9. IPv6 clients are limited per /64 --------------------------------------------


def codes_requested_from(api: APIClient, addresses: list[str]) -> list[int]:
    """otp/request/ once from each client address, for a fresh email each time."""
    return [
        api.post(
            AUTH + "otp/request/",
            {"email": f"u{n}@example.com"},
            format="json",
            REMOTE_ADDR=address,
        ).status_code
        for n, address in enumerate(addresses)
    ]


def test_9_eight_addresses_of_one_slash_64_share_one_budget(api: APIClient) -> None:
    answers = codes_requested_from(api, [f"2001:db8:1:2::{n:x}" for n in range(1, 9)])
    other_network = codes_requested_from(api, ["2001:db8:1:3::1"])

    assert answers == [200] * 3 + [429] * 5
    assert other_network == [200]


@override_settings(
    KINWISE_AUTH={"FRONTEND_URL": "https://app.example.com", "IPV6_PREFIX_LENGTH": 128}
)
def test_9_the_prefix_is_a_setting(api: APIClient) -> None:
    answers = codes_requested_from(api, [f"2001:db8:1:2::{n:x}" for n in range(1, 5)])

    assert answers == [200] * 4


# --- 11. Guessing is capped and visible --------------------------------------------


@pytest.fixture
def generous_limits(settings: Any) -> None:
    settings.RATELIMIT_ENABLE = False


def guess(api: APIClient, email: str, code: str) -> Any:
    return api.post(AUTH + "otp/verify/", {"email": email, "code": code}, format="json")


def request_code(api: APIClient, email: str) -> str:
    api.post(AUTH + "otp/request/", {"email": email}, format="json")
    match = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE)
    assert match
    return match.group(1)


def test_11_failed_code_checks_are_capped_per_day_across_codes(
    api: APIClient, make_user: Any, generous_limits: None
) -> None:
    make_user(VICTIM)
    for _ in range(7):  # three wrong guesses per code, over seven fresh codes
        code = request_code(api, VICTIM)
        for offset in (1, 2, 3):
            guess(api, VICTIM, f"{(int(code) + offset) % 10**6:06d}")

    code = request_code(api, VICTIM)
    response = guess(api, VICTIM, code)  # the right code, after 21 failures

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_code"
    identity = EmailIdentity.objects.get()
    assert identity.failed_codes >= 20
    # The next day the budget is back.
    EmailIdentity.objects.update(failures_since=timezone.now() - timedelta(days=1))
    assert guess(api, VICTIM, request_code(api, VICTIM)).status_code == 200


def test_11_repeated_failures_email_the_owner_once_a_day(
    api: APIClient, make_user: Any, generous_limits: None
) -> None:
    make_user(VICTIM)
    mail.outbox.clear()
    for n in range(25):
        if n % 2:
            login(api, VICTIM, f"wrong-{n}")
        else:
            guess(api, VICTIM, f"{n:06d}")

    notices = [m for m in mail.outbox if "trying to sign in" in m.subject]
    assert len(notices) == 1
    (notice,) = notices
    assert notice.to == [VICTIM]
    assert "10 failed attempts" in notice.body
    assert "10 failed attempts" in notice.alternatives[0][0]
    assert OutboxEmail.objects.filter(kind="sign_in_attempts").count() == 1


def test_11_no_notice_for_unknown_pending_or_deactivated_accounts(
    api: APIClient, make_user: Any, generous_limits: None
) -> None:
    make_user("pending@example.com", verified=False)
    make_user("banned@example.com", active=False)
    for email in ("nobody@example.com", "pending@example.com", "banned@example.com"):
        for n in range(12):
            login(api, email, f"wrong-{n}")
            guess(api, email, f"{n:06d}")

    assert not OutboxEmail.objects.filter(kind="sign_in_attempts").exists()


@override_settings(
    KINWISE_AUTH={
        "FRONTEND_URL": "https://app.example.com",
        "SECURITY_NOTICE_AFTER": None,
    }
)
def test_11_the_notice_can_be_turned_off(
    api: APIClient, make_user: Any, generous_limits: None
) -> None:
    make_user(VICTIM)
    for n in range(12):
        login(api, VICTIM, f"wrong-{n}")

    assert not OutboxEmail.objects.filter(kind="sign_in_attempts").exists()
    assert EmailIdentity.objects.get().failed_sign_ins == 12  # still counted
