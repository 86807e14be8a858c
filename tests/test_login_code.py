from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from rest_framework_simplejwt.tokens import AccessToken

from kinwise_auth.models import AuthEvent, LoginCode, OutboxEmail

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST = "/api/v1/auth/otp/request/"
VERIFY = "/api/v1/auth/otp/verify/"


def request_code(api: Any, email: str = "alice@example.com", **extra: Any) -> Any:
    return api.post(REQUEST, {"email": email}, format="json", **extra)


def last_code() -> str:
    match = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE)
    assert match, mail.outbox[-1].body
    return match.group(1)


def verify(api: Any, code: str, email: str = "alice@example.com", **extra: Any) -> Any:
    return api.post(VERIFY, {"email": email, "code": code}, format="json", **extra)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_request_sends_a_six_digit_code(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")

    response = request_code(api)

    assert response.status_code == 200
    assert response.json() == {
        "message": "If the email exists, an OTP code has been sent.",
        "expires_in": 600,
    }
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == "Your app.example.com login code"
    assert "expire in 10 minutes" in message.body
    assert "didn't request this code" in message.body
    code = last_code()
    assert code in message.alternatives[0][0]
    stored = LoginCode.objects.get()
    assert code not in stored.code_hash and len(stored.code_hash) == 64
    assert stored.ip == "127.0.0.1"


def test_verify_signs_in(api: Any, make_user: Any) -> None:
    user = make_user("alice@example.com")
    request_code(api)

    response = verify(api, last_code(), email="ALICE@example.com")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    assert body["user"]["id"] == user.pk
    assert body["user"]["email"] == "alice@example.com"
    assert AccessToken(body["access"])["user_id"] == str(user.pk)
    user.refresh_from_db()
    assert user.last_login is not None
    event = AuthEvent.objects.get(event_type="login_succeeded")
    assert event.extra == {
        "method": "code",
        "session": str(AccessToken(body["access"])["sid"]),
    }


def test_a_code_works_once(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")
    request_code(api)
    code = last_code()

    assert verify(api, code).status_code == 200
    response = verify(api, code)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid email or OTP code.",
        "code": "invalid_code",
    }


def test_three_wrong_attempts_kill_the_code(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")
    request_code(api)
    code = last_code()

    for _ in range(3):
        assert verify(api, wrong(code)).json()["code"] == "invalid_code"
    response = verify(api, code)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_code"
    assert LoginCode.objects.get().attempts == 3


def test_two_wrong_attempts_then_the_right_code(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")
    request_code(api)
    code = last_code()

    verify(api, wrong(code))
    verify(api, wrong(code))

    assert verify(api, code).status_code == 200


def test_attempts_are_a_setting(api: Any, make_user: Any, settings: Any) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "LOGIN_CODE_MAX_ATTEMPTS": 1,
        "LOGIN_CODE_LENGTH": 8,
    }
    make_user("alice@example.com")
    request_code(api)
    code = re.search(r"^\s+(\d{8})$", mail.outbox[-1].body, re.MULTILINE).group(1)  # type: ignore[union-attr]

    verify(api, f"{(int(code) + 1) % 10**8:08d}")

    assert verify(api, code).json()["code"] == "invalid_code"


def test_a_newer_code_supersedes_the_older(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")
    request_code(api, REMOTE_ADDR="10.0.0.1")
    first = last_code()
    request_code(api, REMOTE_ADDR="10.0.0.2")
    second = last_code()

    if first != second:  # one in a million they coincide
        assert verify(api, first).json()["code"] == "invalid_code"
    assert verify(api, second).status_code == 200


def test_the_right_code_too_late_is_code_expired(
    api: Any, make_user: Any, settings: Any
) -> None:
    settings.KINWISE_AUTH = {
        "FRONTEND_URL": "https://app.example.com",
        "LOGIN_CODE_LIFETIME": 0,
    }
    make_user("alice@example.com")
    request_code(api)
    code = last_code()

    expired = verify(api, code)
    wrong_and_late = verify(api, wrong(code))

    assert expired.status_code == 400
    assert expired.json() == {
        "detail": "OTP code has expired.",
        "code": "code_expired",
    }
    assert wrong_and_late.json()["code"] == "invalid_code"


def test_a_code_is_bound_to_its_account(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")
    make_user("bob@example.com")
    request_code(api)
    alices = last_code()
    request_code(api, "bob@example.com")

    assert verify(api, alices, email="bob@example.com").json()["code"] == "invalid_code"


@pytest.mark.parametrize(
    "state", [{"verified": False}, {"verified": True, "active": False}]
)
def test_pending_and_deactivated_accounts_get_no_code(
    api: Any, make_user: Any, state: dict[str, bool]
) -> None:
    make_user("alice@example.com", **state)

    response = request_code(api)

    assert response.status_code == 200
    assert mail.outbox == []
    assert not LoginCode.objects.exists()
    assert OutboxEmail.objects.get().status == OutboxEmail.Status.SKIPPED


def test_a_code_dies_with_the_account(api: Any, make_user: Any) -> None:
    user = make_user("alice@example.com")
    request_code(api)
    user.is_active = False
    user.save()

    assert verify(api, last_code()).json()["code"] == "invalid_code"


def test_request_is_byte_identical_for_every_kind_of_address(
    api: Any, make_user: Any
) -> None:
    make_user("active@example.com")
    make_user("pending@example.com", verified=False)
    make_user("banned@example.com", active=False)
    answers = set()
    for n, email in enumerate(
        [
            "active@example.com",
            "pending@example.com",
            "banned@example.com",
            "unknown@example.com",
        ]
    ):
        response = request_code(api, email, REMOTE_ADDR=f"10.3.0.{n}")
        answers.add(
            (
                response.status_code,
                response.content,
                tuple(sorted((k, v) for k, v in response.headers.items())),
            )
        )

    assert len(answers) == 1
    assert len(mail.outbox) == 1


def test_request_does_the_same_work_for_every_address(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    make_user("active@example.com")
    for n, email in enumerate(["active@example.com", "unknown@example.com"]):
        with assert_queries(3):
            request_code(api, email, REMOTE_ADDR=f"10.4.0.{n}")
    assert len(broker) == 2
    assert all(list(message["body"][0]) != [] for message in broker)
    broker.drain()
    statuses = list(OutboxEmail.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == ["sent", "skipped"]


def test_the_code_never_crosses_the_broker_or_a_log(
    api: Any, make_user: Any, broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    make_user("alice@example.com")
    request_code(api)
    broker.drain()
    code = last_code()

    assert code not in caplog.text
    assert all(code not in str(row) for row in OutboxEmail.objects.values())
    assert all(code not in str(row) for row in LoginCode.objects.values())
    assert all(code not in str(row) for row in AuthEvent.objects.values())


@pytest.mark.parametrize(
    "body",
    [
        {"email": "alice@example.com", "code": 123456},
        {"email": "alice@example.com", "code": "12 456"},
        {"email": "alice@example.com", "code": "١٢٣٤٥٦"},
        {"email": "alice@example.com", "code": ""},
        {"email": "alice@example.com", "code": "1" * 17},
        {"email": "alice@example.com"},
        {"code": "123456"},
        {"email": ["alice@example.com"], "code": "123456"},
    ],
)
def test_malformed_verify_bodies_are_400(api: Any, body: Any) -> None:
    response = api.post(VERIFY, body, format="json")

    assert response.status_code == 400
    assert "code" in response.json() or "email" in response.json()


def test_request_limits(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")
    for n in range(3):
        assert request_code(api, REMOTE_ADDR=f"10.5.0.{n}").status_code == 200

    per_email = request_code(api, "ALICE@example.com", REMOTE_ADDR="10.5.0.9")
    for n in range(3):
        request_code(api, f"u{n}@example.com", REMOTE_ADDR="10.6.0.1")
    per_ip = request_code(api, "u9@example.com", REMOTE_ADDR="10.6.0.1")

    assert per_email.status_code == 429
    assert per_ip.status_code == 429
    assert per_ip.json()["code"] == "rate_limited"
    assert int(per_ip["Retry-After"]) > 0


def test_verify_limits_per_email_across_ips(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")
    request_code(api)
    code = last_code()
    for n in range(5):
        verify(
            api, "000000" if code != "000000" else "111111", REMOTE_ADDR=f"10.7.0.{n}"
        )

    response = verify(api, code, REMOTE_ADDR="10.7.0.99")

    assert response.status_code == 429


def test_counters_hold_under_atomic_requests(
    api: Any, make_user: Any, settings: Any
) -> None:
    assert settings.DATABASES["default"]["ATOMIC_REQUESTS"] is True
    make_user("alice@example.com")
    request_code(api)

    verify(api, wrong(last_code()))

    assert LoginCode.objects.get().attempts == 1
    assert AuthEvent.objects.filter(event_type="login_failed").count() == 1
