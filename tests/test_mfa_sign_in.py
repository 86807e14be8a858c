"""Sign-in with a second factor (DESIGN.md, "Sign-in with MFA"): the first
factor right, then ``mfa/authenticate/`` with a TOTP or a recovery code."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from kinwise_auth.models import Authenticator, AuthEvent, MfaChallenge, Session
from kinwise_auth.services.factors import recovery_codes, totp

from .conftest import PASSWORD, session_tokens

pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


@pytest.fixture
def secret(alice: Any) -> str:
    """Alice's enabled authenticator app (with ten recovery codes)."""
    value = totp.new_secret()
    Authenticator.objects.create(
        user=alice,
        kind=Authenticator.Kind.TOTP,
        secret=totp.sealed(value, alice.pk),
        confirmed_at=timezone.now(),
    )
    return value


def code(secret: str, offset: int = 0) -> str:
    return totp.code_at(secret, pyotp.TOTP(secret).timecode(timezone.now()) + offset)


def login(client: APIClient | None = None) -> Any:
    return (client or APIClient()).post(
        AUTH + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    )


def authenticate(
    token: str, value: str, client: APIClient | None = None, prefix: str = AUTH
) -> Any:
    return (client or APIClient()).post(
        prefix + "mfa/authenticate/",
        {"mfa_token": token, "code": value},
        format="json",
    )


def me(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return int(client.get(AUTH + "me/").status_code)


def test_an_account_without_a_factor_signs_in_as_before(alice: Any) -> None:
    response = login()

    assert set(response.json()) == {"access", "refresh", "user"}


def test_the_right_password_gets_an_mfa_token_and_no_tokens(
    alice: Any, secret: str
) -> None:
    recovery_codes.issue(alice)

    response = login()

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"mfa_required", "mfa_token", "methods"}
    assert body["mfa_required"] is True
    assert body["methods"] == ["totp", "recovery_code"]
    assert not Session.objects.exists()
    alice.refresh_from_db()
    assert alice.last_login is None
    # Only its keyed hash is kept.
    assert not MfaChallenge.objects.filter(token_hash=body["mfa_token"]).exists()


def test_a_code_sign_in_asks_for_the_second_factor_too(
    alice: Any, secret: str, broker: Any
) -> None:
    client = APIClient()
    client.post(AUTH + "otp/request/", {"email": "alice@example.com"}, format="json")
    broker.drain()
    emailed = re.search(r"\b(\d{6})\b", mail.outbox[-1].body)
    assert emailed

    response = client.post(
        AUTH + "otp/verify/",
        {"email": "alice@example.com", "code": emailed.group(1)},
        format="json",
    )

    assert response.json()["mfa_required"] is True
    signed_in = authenticate(response.json()["mfa_token"], code(secret))
    assert signed_in.status_code == 200
    assert Session.objects.get().method == "code+totp"


def test_a_totp_code_finishes_the_sign_in_once(alice: Any, secret: str) -> None:
    token = login().json()["mfa_token"]

    response = authenticate(token, code(secret))

    assert response.status_code == 200, response.content
    assert set(response.json()) == {"access", "refresh", "user"}
    assert me(response.json()["access"]) == 200
    assert Session.objects.get().method == "password+totp"
    again = authenticate(token, code(secret, 1))
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"


@pytest.mark.parametrize(("offset", "accepted"), [(-1, True), (1, True), (2, False)])
def test_one_step_of_clock_skew(
    alice: Any, secret: str, offset: int, accepted: bool
) -> None:
    response = authenticate(login().json()["mfa_token"], code(secret, offset))

    assert (response.status_code == 200) is accepted


def test_a_time_step_once_used_is_refused_again(alice: Any, secret: str) -> None:
    used = code(secret)
    assert authenticate(login().json()["mfa_token"], used).status_code == 200

    replay = authenticate(login().json()["mfa_token"], used)

    assert replay.status_code == 400
    assert replay.json()["code"] == "invalid_code"
    # An older step, within the skew, is refused too: steps only move forward.
    older = authenticate(login().json()["mfa_token"], code(secret, -1))
    assert older.json()["code"] == "invalid_code"


def test_five_wrong_codes_kill_the_token(alice: Any, secret: str) -> None:
    token = login().json()["mfa_token"]
    for _ in range(5):
        wrong = authenticate(token, "000000" if code(secret) != "000000" else "111111")
        assert wrong.json()["code"] == "invalid_code"

    response = authenticate(token, code(secret))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"
    assert MfaChallenge.objects.get().attempts == 5
    assert (
        AuthEvent.objects.filter(
            event_type="login_failed", extra__reason="invalid_code"
        ).count()
        == 5
    )


def test_every_wrong_code_gets_one_answer(alice: Any, secret: str) -> None:
    token = login().json()["mfa_token"]
    answers = {
        authenticate(token, value).content
        for value in ("123456", "abcd-efgh-jkmn", "1", "zzzz-zzzz-zzzz")
    }

    assert len(answers) == 1


def test_a_recovery_code_works_once_and_tells_the_owner(
    alice: Any, secret: str, broker: Any
) -> None:
    first = recovery_codes.issue(alice)[0]

    response = authenticate(login().json()["mfa_token"], first.upper())

    assert response.status_code == 200
    assert Session.objects.get().method == "password+recovery_code"
    broker.drain()
    assert "A recovery code was just used" in mail.outbox[-1].body
    again = authenticate(login().json()["mfa_token"], first)
    assert again.json()["code"] == "invalid_code"


def test_an_expired_or_superseded_token_is_dead(alice: Any, secret: str) -> None:
    old = login().json()["mfa_token"]
    new = login().json()["mfa_token"]

    assert authenticate(old, code(secret)).json()["code"] == "invalid_token"
    MfaChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert authenticate(new, code(secret)).json()["code"] == "invalid_token"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"mfa_token": "x" * 43},
        {"mfa_token": "x" * 43, "code": 123456},
        {"mfa_token": ["x"], "code": "123456"},
        {"mfa_token": "x" * 300, "code": "123456"},
    ],
)
def test_bad_bodies_are_400s(alice: Any, body: dict[str, Any]) -> None:
    response = APIClient().post(AUTH + "mfa/authenticate/", body, format="json")

    assert response.status_code == 400


def test_an_unknown_token_is_invalid_token(alice: Any, secret: str) -> None:
    response = authenticate("x" * 43, code(secret))

    assert response.json()["code"] == "invalid_token"


def test_a_deactivated_account_cannot_finish(alice: Any, secret: str) -> None:
    token = login().json()["mfa_token"]
    alice.is_active = False
    alice.save()

    assert authenticate(token, code(secret)).json()["code"] == "invalid_token"


def test_the_browser_transport_takes_the_second_step_too(
    alice: Any, secret: str
) -> None:
    browser = APIClient(enforce_csrf_checks=True)
    browser.credentials(
        HTTP_X_CSRFTOKEN=browser.get(AUTH + "browser/csrf/").json()["csrf_token"]
    )
    first = browser.post(
        AUTH + "browser/login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    )
    assert first.json()["mfa_required"] is True
    assert "kinwise_refresh" not in first.cookies

    response = authenticate(
        first.json()["mfa_token"], code(secret), browser, AUTH + "browser/"
    )

    assert response.status_code == 200
    assert set(response.json()) == {"access", "user"}
    assert response.cookies["kinwise_refresh"].value


# --- step-up ------------------------------------------------------------------------


def signed_in(alice: Any) -> APIClient:
    client = APIClient()
    client.default_format = "json"
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_tokens(alice)['access']}")
    return client


def test_a_code_of_the_app_reauthenticates_for_a_sensitive_change(
    alice: Any, secret: str
) -> None:
    client = signed_in(alice)
    assert client.post(AUTH + "mfa/recovery-codes/", {}).status_code == 403

    response = client.post(AUTH + "reauthenticate/", {"totp": code(secret)})

    assert response.status_code == 200, response.content
    assert client.post(AUTH + "mfa/recovery-codes/", {}).status_code == 200
    assert AuthEvent.objects.filter(
        event_type="reauthenticated", extra={"method": "totp"}
    ).exists()


def test_a_step_up_code_is_refused_twice_and_when_wrong(
    alice: Any, secret: str
) -> None:
    client = signed_in(alice)
    used = code(secret)
    assert client.post(AUTH + "reauthenticate/", {"totp": used}).status_code == 200

    replay = client.post(AUTH + "reauthenticate/", {"totp": used})
    wrong = client.post(AUTH + "reauthenticate/", {"totp": "00000"})

    assert replay.status_code == 400 and replay.json()["code"] == "invalid_code"
    assert wrong.status_code == 400
    assert AuthEvent.objects.filter(
        event_type="reauthentication_failed", extra__reason="invalid_code"
    ).exists()


@pytest.mark.parametrize("body", [{}, {"password": PASSWORD, "totp": "123456"}])
def test_reauthentication_takes_exactly_one_proof(
    alice: Any, secret: str, body: dict[str, Any]
) -> None:
    response = signed_in(alice).post(AUTH + "reauthenticate/", body)

    assert response.status_code == 400


def test_a_step_up_expires(alice: Any, secret: str, settings: Any) -> None:
    client = signed_in(alice)
    assert (
        client.post(AUTH + "reauthenticate/", {"totp": code(secret)}).status_code == 200
    )
    Session.objects.update(reauthenticated_at=timezone.now() - timedelta(minutes=6))

    response = client.post(AUTH + "mfa/recovery-codes/", {})

    assert response.status_code == 403
    assert response.json()["code"] == "reauthentication_required"


def test_the_refusal_names_the_methods_the_account_has(
    alice: Any, secret: str, make_user: Any
) -> None:
    both = signed_in(alice).post(AUTH + "sessions/revoke-others/", {}).json()
    code_only = make_user("bob@example.com")
    code_only.set_unusable_password()
    code_only.save()
    bare = signed_in(code_only).post(AUTH + "sessions/revoke-others/", {}).json()

    # With a second factor, a mailbox alone is not proof enough.
    assert both["methods"] == ["password", "totp"]
    assert bare["methods"] == ["email_code"]


def emailed_code(broker: Any) -> str:
    broker.drain()
    found = re.search(r"^\s+(\d{6})\s*$", mail.outbox[-1].body, re.MULTILINE)
    assert found, mail.outbox[-1].body
    return found.group(1)


def test_a_code_only_account_changes_its_email_by_an_emailed_code_alone(
    make_user: Any, broker: Any
) -> None:
    """No password to give, no app: an emailed code is its proof."""
    bob = make_user("bob@example.com")
    bob.set_unusable_password()
    bob.save()
    client = signed_in(bob)
    refused = client.post(AUTH + "email/change/", {"new_email": "new@example.com"})
    assert refused.status_code == 403
    assert refused.json()["methods"] == ["email_code"]

    sent = client.post(AUTH + "reauthenticate/email-code/", {})
    assert sent.status_code == 200 and sent.json()["expires_in"] == 600
    proof = {"email_code": emailed_code(broker)}
    assert "confirmation code" in mail.outbox[-1].subject
    stepped_up = client.post(AUTH + "reauthenticate/", proof)
    assert stepped_up.status_code == 200, stepped_up.content

    changed = client.post(AUTH + "email/change/", {"new_email": "new@example.com"})

    assert changed.status_code == 200, changed.content
    assert AuthEvent.objects.filter(
        event_type="reauthenticated", extra={"method": "email_code"}
    ).exists()


def test_a_reauthentication_code_never_signs_in_nor_a_sign_in_code_reauthenticates(
    alice: Any, broker: Any
) -> None:
    client = signed_in(alice)
    client.post(AUTH + "reauthenticate/email-code/", {})
    reauth_code = emailed_code(broker)
    APIClient().post(
        AUTH + "otp/request/", {"email": "alice@example.com"}, format="json"
    )
    sign_in_code = emailed_code(broker)

    sign_in = APIClient().post(
        AUTH + "otp/verify/",
        {"email": "alice@example.com", "code": reauth_code},
        format="json",
    )
    step_up = client.post(AUTH + "reauthenticate/", {"email_code": sign_in_code})

    assert sign_in.json()["code"] == "invalid_code" or reauth_code == sign_in_code
    assert step_up.json()["code"] == "invalid_code" or reauth_code == sign_in_code
    # Each still works for its own purpose.
    assert (
        client.post(AUTH + "reauthenticate/", {"email_code": reauth_code}).status_code
        == 200
    )


def test_a_sign_in_is_not_a_reauthentication(alice: Any) -> None:
    """A stolen, fresh session cannot skip the proof by being fresh."""
    response = signed_in(alice).post(AUTH + "account/delete/", {})

    assert response.status_code == 403
    assert response.json()["methods"] == ["password", "email_code"]


def test_a_password_reset_kills_a_sign_in_waiting_for_its_second_factor(
    alice: Any, secret: str
) -> None:
    from kinwise_auth.services.secrets import retire_secrets

    token = login().json()["mfa_token"]
    retire_secrets(alice)  # what a reset, a change of password or address does

    assert authenticate(token, code(secret)).json()["code"] == "invalid_token"


def test_expired_challenges_are_purged(alice: Any, secret: str) -> None:
    from kinwise_auth import maintenance

    login()
    MfaChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    assert maintenance.purge_expired()["mfa_challenges"] == 1
    assert not MfaChallenge.objects.exists()


def test_the_new_sign_in_email_names_both_factors(
    alice: Any, secret: str, broker: Any
) -> None:
    authenticate(login().json()["mfa_token"], code(secret))  # the first session
    other = APIClient(REMOTE_ADDR="203.0.113.9")  # another network
    token = login(other).json()["mfa_token"]
    mail.outbox.clear()

    authenticate(token, code(secret, 1), other)
    broker.drain()

    (notice,) = [m for m in mail.outbox if "New sign-in" in m.subject]
    assert "Signed in with: password + authenticator app." in notice.body


# --- guessing the second factor ------------------------------------------------


def test_wrong_second_factor_codes_count_and_cap_the_day(
    alice: Any, secret: str, settings: Any, broker: Any
) -> None:
    """An intruder who holds the password guesses codes over many sign-ins: each
    wrong code counts towards the account's day of failed code checks, past
    which even the right code is refused, and the owner is told."""
    from kinwise_auth.models import EmailIdentity, OutboxEmail

    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "LOGIN_CODE_DAILY_FAILURES": 4,
        "SECURITY_NOTICE_AFTER": 3,
        "RATE_LIMITS": {
            "login": {"email": None},
            "mfa_authenticate": {"account": None},
        },
    }
    wrong = "000000" if code(secret) != "000000" else "111111"
    for _ in range(4):
        assert authenticate(login().json()["mfa_token"], wrong).status_code == 400

    refused = authenticate(login().json()["mfa_token"], code(secret))

    assert refused.json()["code"] == "invalid_code"
    identity = EmailIdentity.objects.get(user=alice)
    assert identity.failed_codes >= 4
    assert OutboxEmail.objects.filter(kind=OutboxEmail.Kind.SIGN_IN_ATTEMPTS).exists()


def test_wrong_step_up_codes_count_too(alice: Any, secret: str, settings: Any) -> None:
    from kinwise_auth.models import EmailIdentity

    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "LOGIN_CODE_DAILY_FAILURES": 3,
        "RATE_LIMITS": {"reauthenticate": {"account": None}},
    }
    client = signed_in(alice)
    wrong = "000000" if code(secret) != "000000" else "111111"
    for _ in range(3):
        assert client.post(AUTH + "reauthenticate/", {"totp": wrong}).status_code == 400

    refused = client.post(AUTH + "reauthenticate/", {"totp": code(secret)})

    assert refused.json()["code"] == "invalid_code"
    assert EmailIdentity.objects.get(user=alice).failed_codes == 4


def test_a_mailbox_alone_cannot_remove_a_second_factor(alice: Any, secret: str) -> None:
    """A stolen session and the mailbox must not be enough to drop the app."""
    client = signed_in(alice)

    asked = client.post(AUTH + "reauthenticate/email-code/", {})
    proved = client.post(AUTH + "reauthenticate/", {"email_code": "123456"})

    assert asked.status_code == 403
    assert asked.json()["methods"] == ["password", "totp"]
    assert proved.status_code == 403
    assert client.delete(AUTH + "mfa/totp/", {}).status_code == 403


def test_sign_ins_at_once_leave_one_live_token(
    alice: Any, secret: str, settings: Any
) -> None:
    import threading

    from django.db import connection

    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "RATE_LIMITS": {"login": {"email": None}},
    }
    start = threading.Barrier(6)
    answers: list[Any] = []

    def sign_in_now() -> None:
        start.wait()
        try:
            answers.append(login())
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_in_now) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status_code for a in answers] == [200] * 6, [a.content for a in answers]
    assert MfaChallenge.objects.live().count() == 1
