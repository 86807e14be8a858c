"""The "new sign-in" email and its link that signs that session out (DESIGN.md,
"Sessions and token transport": new sign-in notice)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from kinwise_auth.models import AuthEvent, LinkToken, OutboxEmail, Session
from kinwise_auth.services.devices import network_of

from .conftest import PASSWORD

# Revocations reach the cache when their transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"
FIREFOX = (
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36"
)
HOME = "198.51.100.7"
NOTICE = OutboxEmail.Kind.NEW_SIGN_IN


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


def sign_in(ip: str = HOME, agent: str = FIREFOX) -> dict[str, str]:
    response = APIClient().post(
        AUTH + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
        REMOTE_ADDR=ip,
        HTTP_USER_AGENT=agent,
    )
    assert response.status_code == 200, response.content
    return dict(response.json())


def me(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return int(client.get(AUTH + "me/").status_code)


def notices() -> int:
    return OutboxEmail.objects.filter(kind=NOTICE).count()


def revoke_link(broker: Any) -> str:
    broker.drain()
    (message,) = [m for m in mail.outbox if "New sign-in" in m.subject]
    mail.outbox.remove(message)
    match = re.search(r"/revoke-session\?token=([\w\-]+)", message.body)
    assert match, message.body
    return match.group(1)


def confirm(token: Any) -> Any:
    return APIClient().post(
        AUTH + "sessions/revoke/confirm/", {"token": token}, format="json"
    )


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("198.51.100.7", "198.51.100.0/24"),
        ("::ffff:198.51.100.7", "198.51.100.0/24"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
        (None, ""),
        ("not an ip", ""),
    ],
)
def test_the_network_of_an_address(ip: Any, network: str) -> None:
    assert network_of(ip) == network


def test_the_first_sign_in_after_verification_sends_no_notice(alice: Any) -> None:
    sign_in()

    assert notices() == 0
    assert Session.objects.get().new_device is False


def test_the_same_device_on_the_same_network_sends_no_notice(alice: Any) -> None:
    sign_in("198.51.100.7")
    sign_in("198.51.100.200")  # the same /24: a home router's new lease
    sign_in("2001:db8:abcd:1::1")
    sign_in("2001:db8:abcd:2::9")  # the same /48

    assert notices() == 1  # the move to IPv6 only
    assert Session.objects.filter(new_device=True).count() == 1


@pytest.mark.parametrize(
    ("ip", "agent"),
    [
        (HOME, CHROME_ANDROID),  # another device, the same network
        ("203.0.113.9", FIREFOX),  # the same device label, another network
        ("2001:db8:ffff::1", FIREFOX),
    ],
)
def test_a_new_device_or_network_queues_a_notice(
    alice: Any, ip: str, agent: str
) -> None:
    sign_in()

    sign_in(ip, agent)

    notice = OutboxEmail.objects.get(kind=NOTICE)
    assert notice.recipient == "alice@example.com"
    new = Session.objects.get(new_device=True)
    assert notice.context["session"] == str(new.public_id)
    assert notice.context["ip"] == ip


def test_a_device_unused_for_the_window_is_new_again(alice: Any) -> None:
    sign_in()
    Session.objects.update(last_used_at=timezone.now() - timedelta(days=91))

    sign_in()

    assert notices() == 1


def test_the_setting_turns_it_off(alice: Any, settings: Any) -> None:
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "NEW_SIGN_IN_EMAIL": False}
    sign_in()

    sign_in("203.0.113.9", CHROME_ANDROID)

    assert notices() == 0


def test_the_email_names_when_device_ip_and_method_and_its_link_signs_out_that_session(
    alice: Any, broker: Any
) -> None:
    mine = sign_in()
    theirs = sign_in("203.0.113.9", CHROME_ANDROID)
    mail.outbox.clear()
    broker.drain()
    (message,) = mail.outbox
    html = message.alternatives[0][0]
    for part in (message.body, html):
        assert "Chrome Mobile 126 on Android" in part
        assert "203.0.113.9" in part
        assert "password" in part
    token = _link(message.body)
    # Only the keyed hash is stored.
    assert not LinkToken.objects.filter(token_hash=token).exists()

    response = confirm(token)

    assert response.status_code == 200, response.content
    assert me(theirs["access"]) == 401
    assert me(mine["access"]) == 200
    session = Session.objects.get(new_device=True)
    assert session.revoked_reason == "notice_link"
    event = AuthEvent.objects.get(event_type="session_revoked")
    assert event.extra == {
        "sessions": [str(session.public_id)],
        "reason": "notice_link",
    }
    # It signed no one in: no tokens in the answer.
    assert set(response.json()) == {"message"}


def _link(body: str) -> str:
    match = re.search(r"/revoke-session\?token=([\w\-]+)", body)
    assert match, body
    return match.group(1)


def test_the_link_works_once(alice: Any, broker: Any) -> None:
    sign_in()
    sign_in("203.0.113.9")
    token = revoke_link(broker)
    assert confirm(token).status_code == 200

    again = confirm(token)

    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"


def test_an_expired_link_is_refused(alice: Any, broker: Any, settings: Any) -> None:
    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "SESSION_REVOKE_LIFETIME": timedelta(seconds=1),
    }
    sign_in()
    theirs = sign_in("203.0.113.9")
    token = revoke_link(broker)
    LinkToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = confirm(token)

    assert response.status_code == 400
    assert response.json()["code"] == "token_expired"
    assert me(theirs["access"]) == 200


@pytest.mark.parametrize("token", ["", "x" * 43, 12345, None, ["a"]])
def test_a_bad_token_is_a_400(alice: Any, token: Any) -> None:
    response = confirm(token)

    assert response.status_code == 400


def test_two_notices_keep_two_working_links(alice: Any, broker: Any) -> None:
    sign_in()
    first = sign_in("203.0.113.9")
    first_link = revoke_link(broker)
    second = sign_in("192.0.2.44", CHROME_ANDROID)
    second_link = revoke_link(broker)

    assert confirm(first_link).status_code == 200
    assert confirm(second_link).status_code == 200
    assert me(first["access"]) == 401
    assert me(second["access"]) == 401


def test_an_intruder_who_changes_the_password_cannot_kill_the_owners_link(
    alice: Any, broker: Any
) -> None:
    """The intruder holds the password: they sign in (the owner is told) and
    change the password at once, which signs the owner out and retires every
    link mailed before. The link that ends the intruder's session must survive
    that, or the owner is left with nothing but a password reset."""
    sign_in()
    intruder = sign_in("203.0.113.9", CHROME_ANDROID)
    link = revoke_link(broker)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {intruder['access']}")
    changed = client.post(
        AUTH + "password/change/",
        {
            "current_password": PASSWORD,
            "new_password": "An0ther-long-passphrase",
            "new_password_confirm": "An0ther-long-passphrase",
        },
        format="json",
    )
    assert changed.status_code == 200, changed.content
    intruder_access = changed.json()["access"]
    assert me(intruder_access) == 200

    assert confirm(link).status_code == 200

    assert me(intruder_access) == 401


def test_a_link_of_another_purpose_is_refused(alice: Any, broker: Any) -> None:
    sign_in()
    theirs = sign_in("203.0.113.9")
    broker.drain()
    mail.outbox.clear()
    APIClient().post(
        AUTH + "password/reset/", {"email": "alice@example.com"}, format="json"
    )
    broker.drain()
    reset = re.search(r"token=([\w\-]+)", mail.outbox[-1].body)
    assert reset

    response = confirm(reset.group(1))

    assert response.status_code == 400
    assert me(theirs["access"]) == 200
