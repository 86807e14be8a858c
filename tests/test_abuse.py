"""Attacks from the advisories that broke comparable packages, one test each."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import get_hasher
from django.core import mail
from rest_framework.test import APIClient

from kinwise_auth.models import AuthEvent, OutboxEmail

from .conftest import PASSWORD, register_body

pytestmark = pytest.mark.django_db(transaction=True)

REGISTER = "/api/v1/auth/register/"


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts password hashes computed by the configured hasher."""
    calls: list[int] = []
    hasher = type(get_hasher())
    original = hasher.encode
    monkeypatch.setattr(
        hasher,
        "encode",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )
    return calls


def test_registration_cannot_set_fields_the_serializer_does_not_name(
    api: Any,
) -> None:
    body = register_body(
        is_staff=True,
        is_superuser=True,
        is_active=True,
        id=999,
        pk=999,
        last_login="2020-01-01T00:00:00Z",
        groups=[1],
        user_permissions=[1],
    )

    response = api.post(REGISTER, body, format="json")

    assert response.status_code == 201
    user = get_user_model()._default_manager.get()
    assert (user.is_staff, user.is_superuser, user.is_active) == (False, False, False)
    assert user.pk != 999
    assert user.last_login is None


def test_a_pending_accounts_names_never_reach_its_verification_email(
    api: Any,
) -> None:
    # Whoever registered first may not be the mailbox's owner: the names they
    # typed (a phishing URL, say) are not shown to the mailbox.
    api.post(
        REGISTER,
        register_body(first_name="Visit https://evil.example", last_name="<b>x</b>"),
        format="json",
    )

    (message,) = mail.outbox
    for part in (message.body, message.alternatives[0][0], message.subject):
        assert "evil.example" not in part
        assert "<b>x</b>" not in part


def test_names_are_escaped_in_the_html_email(api: Any, make_user: Any) -> None:
    user = make_user("alice@example.com")
    if not hasattr(user, "first_name"):
        # The custom user has no name fields: the greeting falls back to the address.
        api.post(
            "/api/v1/auth/otp/request/", {"email": "alice@example.com"}, format="json"
        )
        assert "Hi alice@example.com," in mail.outbox[0].alternatives[0][0]
        return
    user.first_name = '<img src=x onerror="alert(1)">'
    user.save()
    api.post("/api/v1/auth/otp/request/", {"email": "alice@example.com"}, format="json")

    html = mail.outbox[0].alternatives[0][0]
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


@pytest.mark.parametrize("field", ["password", "first_name"])
def test_an_oversized_field_is_refused_before_any_hashing(
    api: Any, hashes: list[int], field: str
) -> None:
    huge = "x" * 30_000  # twice over, still under the 64 KiB body cap
    body = register_body(**{field: huge})
    if field == "password":
        body["password_confirm"] = huge

    response = api.post(REGISTER, body, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert hashes == []


def test_a_megabyte_body_is_refused_unread(api: Any, hashes: list[int]) -> None:
    huge = "x" * (1024 * 1024)
    body = register_body(password=huge, password_confirm=huge)

    response = api.post(REGISTER, body, format="json")

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert hashes == []


def test_email_change_answers_and_works_alike_for_taken_and_free(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    make_user("alice@example.com")
    make_user("bob@example.com")
    access = api.post(
        "/api/v1/auth/login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    ).json()["access"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    answers = []
    for new_email in ["bob@example.com", "carol@example.com"]:
        # user (JWT), earlier change links retired, holder lookup, outbox, audit
        with assert_queries(5):
            response = client.post(
                "/api/v1/auth/email/change/",
                {"new_email": new_email, "password": PASSWORD},
                format="json",
            )
        answers.append(
            (response.status_code, response.content, sorted(response.items()))
        )

    assert answers[0] == answers[1]
    assert len(broker) == 2


def test_rotating_forwarded_for_does_not_escape_the_login_limit(
    api: Any, make_user: Any
) -> None:
    make_user("alice@example.com")
    for n in range(10):
        api.post(
            "/api/v1/auth/login/",
            {"email": f"u{n}@example.com", "password": "x"},
            format="json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        )

    response = api.post(
        "/api/v1/auth/login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
        HTTP_X_FORWARDED_FOR="203.0.113.77",
    )

    assert response.status_code == 429


def test_one_account_cannot_be_guessed_at_from_many_ips(
    api: Any, make_user: Any
) -> None:
    make_user("alice@example.com")
    for n in range(5):
        api.post(
            "/api/v1/auth/login/",
            {"email": "alice@example.com", "password": f"guess-{n}"},
            format="json",
            REMOTE_ADDR=f"192.0.2.{n}",
        )

    response = api.post(
        "/api/v1/auth/login/",
        {"email": "ALICE@example.com", "password": PASSWORD},
        format="json",
        REMOTE_ADDR="192.0.2.200",
    )

    assert response.status_code == 429


def test_a_success_does_not_clear_other_accounts_failures(
    api: Any, make_user: Any
) -> None:
    make_user("alice@example.com")
    make_user("bob@example.com")
    for n in range(5):
        api.post(
            "/api/v1/auth/login/",
            {"email": "bob@example.com", "password": f"guess-{n}"},
            format="json",
            REMOTE_ADDR=f"192.0.2.{n}",
        )
    assert (
        api.post(
            "/api/v1/auth/login/",
            {"email": "alice@example.com", "password": PASSWORD},
            format="json",
            REMOTE_ADDR="192.0.2.50",
        ).status_code
        == 200
    )

    response = api.post(
        "/api/v1/auth/login/",
        {"email": "bob@example.com", "password": PASSWORD},
        format="json",
        REMOTE_ADDR="192.0.2.51",
    )

    assert response.status_code == 429


def test_one_address_cannot_be_flooded_with_codes_from_many_ips(
    api: Any, make_user: Any
) -> None:
    make_user("alice@example.com")
    for n in range(3):
        api.post(
            "/api/v1/auth/otp/request/",
            {"email": "alice@example.com"},
            format="json",
            REMOTE_ADDR=f"192.0.2.{n}",
        )

    response = api.post(
        "/api/v1/auth/otp/request/",
        {"email": " ALICE@Example.COM "},
        format="json",
        REMOTE_ADDR="192.0.2.99",
    )

    assert response.status_code == 429
    assert len(mail.outbox) == 3


def test_rate_limit_answers_do_not_reveal_accounts(api: Any, make_user: Any) -> None:
    make_user("alice@example.com")
    limited = {}
    for email in ["alice@example.com", "nobody@example.com"]:
        for n in range(4):
            response = api.post(
                "/api/v1/auth/password/reset/",
                {"email": email},
                format="json",
                REMOTE_ADDR=f"192.0.2.{n + (10 if email[0] == 'n' else 0)}",
            )
        limited[email] = (
            response.status_code,
            response.json(),
            sorted(k for k in response.headers if k != "Retry-After"),
        )

    assert limited["alice@example.com"] == limited["nobody@example.com"]
    assert limited["alice@example.com"][0] == 429


def test_a_rejected_request_writes_nothing(api: Any, hashes: list[int]) -> None:
    bodies: list[Any] = [
        register_body(email="not-an-email"),
        register_body(password_confirm="different-one-9"),
        register_body(password="short"),
        [register_body()],
        "just a string",
        None,
    ]
    for n, body in enumerate(bodies):
        response = api.post(REGISTER, body, format="json", REMOTE_ADDR=f"192.0.2.{n}")
        assert response.status_code == 400, body

    assert get_user_model()._default_manager.count() == 0
    assert OutboxEmail.objects.count() == 0
    assert AuthEvent.objects.count() == 0


def test_the_code_in_the_email_is_the_only_clear_copy(api: Any, make_user: Any) -> None:
    from django.db import connection

    make_user("alice@example.com")
    api.post("/api/v1/auth/otp/request/", {"email": "alice@example.com"}, format="json")
    code = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE).group(1)  # type: ignore[union-attr]

    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (our own tables)
            for row in cursor.fetchall():
                for value in row:
                    text = str(value)
                    if not hasattr(value, "isoformat"):
                        assert not re.search(rf"(?<!\d){code}(?!\d)", text), table


def test_one_address_cannot_be_flooded_with_email_change_links(
    make_user: Any,
) -> None:
    answers = []
    for n in range(4):
        make_user(f"user{n}@example.com")
        access = (
            APIClient()
            .post(
                "/api/v1/auth/login/",
                {"email": f"user{n}@example.com", "password": PASSWORD},
                format="json",
                REMOTE_ADDR=f"192.0.2.{n}",
            )
            .json()["access"]
        )
        client = APIClient(REMOTE_ADDR=f"198.51.100.{n}")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        answers.append(
            client.post(
                "/api/v1/auth/email/change/",
                {"new_email": "Target@Example.com", "password": PASSWORD},
                format="json",
            ).status_code
        )

    assert answers == [200, 200, 200, 429]


def test_an_older_code_stays_dead_after_the_newer_is_used(
    api: Any, make_user: Any
) -> None:
    make_user("alice@example.com")
    codes = []
    for n in range(2):
        api.post(
            "/api/v1/auth/otp/request/",
            {"email": "alice@example.com"},
            format="json",
            REMOTE_ADDR=f"192.0.2.{n}",
        )
        codes.append(
            re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE).group(1)  # type: ignore[union-attr]
        )
    first, second = codes
    verify = "/api/v1/auth/otp/verify/"

    assert (
        api.post(
            verify, {"email": "alice@example.com", "code": second}, format="json"
        ).status_code
        == 200
    )
    if first != second:
        response = api.post(
            verify, {"email": "alice@example.com", "code": first}, format="json"
        )
        assert response.json()["code"] == "invalid_code"


def test_an_address_longer_than_254_once_normalised_is_refused(api: Any) -> None:
    # U+FB03 (the "ffi" ligature) becomes three letters under NFKC.
    label = "\ufb03" * 21
    email = "a@" + ".".join([label] * 10) + ".com"
    assert len(email) <= 254

    response = api.post(REGISTER, register_body(email), format="json")

    assert response.status_code == 400
    assert response.json() == {"email": ["This address is too long."]}


def test_a_fullwidth_copy_of_an_address_is_the_same_account(
    api: Any, make_user: Any
) -> None:
    make_user("ab@example.com")
    mail.outbox.clear()

    # Fullwidth letters are refused in the local part (Django's validator) and
    # folded by NFKC in the domain: either way, no second account.
    refused = api.post(
        REGISTER, register_body("\uff41\uff42@example.com"), format="json"
    )
    folded = api.post(
        REGISTER,
        register_body("ab@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"),
        format="json",
    )

    assert refused.status_code == 400
    assert folded.status_code == 201
    assert get_user_model()._default_manager.count() == 1
    assert mail.outbox[0].to == ["ab@example.com"]


def test_the_parser_refuses_a_body_longer_than_announced() -> None:
    import io

    from kinwise_auth.errors import RequestTooLarge
    from kinwise_auth.parsers import BoundedJSONParser

    # What reaches the parser when a client's Content-Length lies (ASGI servers
    # hand over the whole stream): it reads one byte past the cap, no more.
    stream = io.BytesIO(b'{"email": "' + b"a" * (1024 * 1024) + b'"}')

    with pytest.raises(RequestTooLarge):
        BoundedJSONParser().parse(stream, "application/json", {})
    assert stream.tell() == 64 * 1024 + 1
