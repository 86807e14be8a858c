from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import override_settings

from kinwise_auth.models import AuthEvent, EmailIdentity, LinkToken, OutboxEmail

from .conftest import PASSWORD, register_body

URL = "/api/v1/auth/register/"
NO_PREVENTION = {
    "FRONTEND_URL": "https://app.example.com",
    "PREVENT_ENUMERATION": False,
}

pytestmark = pytest.mark.django_db(transaction=True)


def users_with(email: str) -> Any:
    user_model = get_user_model()
    return user_model._default_manager.filter(
        **{user_model.get_email_field_name(): email}
    )


# --- the plan's two tests, ported ------------------------------------------


def test_registration_success(api: Any) -> None:
    data = register_body("test@example.com", first_name="Test", last_name="User")

    response = api.post(URL, data, format="json")

    assert response.status_code == 201
    assert "message" in response.data
    user = users_with("test@example.com").get()
    assert not user.is_active
    identity = EmailIdentity.objects.get(user=user)
    assert identity.verified_at is None
    # The verification token exists, minted by the task, only as a hash.
    token = LinkToken.objects.get(user=user, purpose="verify_email")
    assert len(token.token_hash) == 64


@override_settings(KINWISE_AUTH=NO_PREVENTION)
def test_registration_duplicate_email(api: Any, make_user: Any) -> None:
    make_user("test@example.com")

    response = api.post(URL, register_body("test@example.com"), format="json")

    assert response.status_code == 400
    assert "email" in response.data
    assert users_with("test@example.com").count() == 1


def test_registration_duplicate_email_under_enumeration_prevention(
    api: Any, make_user: Any
) -> None:
    make_user("test@example.com")
    fresh = api.post(URL, register_body("fresh@example.com"), format="json")
    mail.outbox.clear()

    response = api.post(URL, register_body("test@example.com"), format="json")

    # Same status and body shape as a fresh address; the holder is told instead.
    assert response.status_code == 201
    assert response.json() == {**fresh.json(), "email": "test@example.com"}
    assert users_with("test@example.com").count() == 1
    (message,) = mail.outbox
    assert message.to == ["test@example.com"]
    assert "already uses it" in message.body
    assert "token=" not in message.body


# --- the contract ------------------------------------------------------------


def test_success_body_and_verification_email(api: Any) -> None:
    response = api.post(URL, register_body("new@example.com"), format="json")

    assert response.json() == {
        "message": "Registration successful. Please check your email to verify "
        "your account.",
        "email": "new@example.com",
    }
    (message,) = mail.outbox
    assert message.to == ["new@example.com"]
    assert message.subject == "Verify your app.example.com account"
    assert "https://app.example.com/verify-email?token=" in message.body
    (html, mimetype) = message.alternatives[0]
    assert mimetype == "text/html"
    assert "https://app.example.com/verify-email?token=" in html


@override_settings(KINWISE_AUTH=NO_PREVENTION)
def test_user_id_only_when_prevention_is_off(api: Any) -> None:
    response = api.post(URL, register_body(), format="json")

    assert response.status_code == 201
    assert response.data["user_id"] == users_with("new@example.com").get().pk


def test_new_account_is_pending_with_profile(api: Any) -> None:
    api.post(URL, register_body(first_name="Ada", last_name="Lovelace"), format="json")

    user = users_with("new@example.com").get()
    assert user.is_active is False
    assert user.check_password(PASSWORD)
    if hasattr(user, "first_name"):
        assert (user.first_name, user.last_name) == ("Ada", "Lovelace")
    assert AuthEvent.objects.filter(event_type="user_registered", user=user).exists()


def test_pending_address_gets_a_fresh_link_not_a_second_account(
    api: Any, make_user: Any
) -> None:
    user = make_user("pending@example.com", verified=False)

    response = api.post(URL, register_body("PENDING@example.com"), format="json")

    assert response.status_code == 201
    (message,) = mail.outbox
    # The newest registration's spelling wins: a pending account is nobody's yet.
    assert message.to == ["PENDING@example.com"]
    assert "verify-email?token=" in message.body
    assert LinkToken.objects.filter(user=user).count() == 1
    assert EmailIdentity.objects.count() == 1


@pytest.mark.parametrize(
    "variant",
    [
        "ALICE@EXAMPLE.COM",
        " alice@Example.com ",
        "alice@example.com\n",
        "alice@EXAMPLE.com",
        # A domain is IDNA-mapped (UTS #46): a full-width letter there is plain.
        "alice@\uff45xample.com",
    ],
)
def test_case_and_lookalike_variants_are_one_account(
    api: Any, make_user: Any, variant: str
) -> None:
    make_user("alice@example.com")
    make_user("sam@example.com")
    mail.outbox.clear()

    response = api.post(URL, register_body(variant), format="json")

    assert response.status_code == 201
    assert EmailIdentity.objects.count() == 2
    (message,) = mail.outbox
    # Mail goes to the stored address, never to the look-alike (CVE-2019-19844).
    assert message.to == ["alice@example.com"]


@pytest.mark.parametrize(
    "lookalike",
    [
        "\u212aim@example.com",  # KELVIN SIGN: NFKC would make it "Kim"
        "\u017fam@example.com",  # LONG S: case folding would make it "sam"
        # Both pass Django's EmailValidator (its ASCII pattern matches them
        # ignoring case), which is how they squatted before.
    ],
)
def test_a_lookalike_local_part_is_refused_not_folded_onto_an_account(
    api: Any, make_user: Any, lookalike: str
) -> None:
    make_user("kim@example.com")
    make_user("sam@example.com")
    mail.outbox.clear()

    response = api.post(URL, register_body(lookalike), format="json")

    assert response.status_code == 400
    assert response.json() == {
        "email": ["This address contains look-alike characters."]
    }
    assert EmailIdentity.objects.count() == 2
    assert mail.outbox == []


def test_deactivated_account_gets_no_link(api: Any, make_user: Any) -> None:
    make_user("banned@example.com", verified=True, active=False)

    api.post(URL, register_body("banned@example.com"), format="json")

    (message,) = mail.outbox
    assert "token=" not in message.body
    assert not LinkToken.objects.exists()


def test_long_email_gets_a_generated_username() -> None:
    from kinwise_auth.services import RequestMeta, register_user

    email = ("x" * 64) + "@" + ("d" * 63) + "." + ("e" * 60) + ".com"
    result = register_user(email=email, password=PASSWORD, meta=RequestMeta())

    user = get_user_model()._default_manager.get(pk=result.user_id)
    if get_user_model().USERNAME_FIELD == "username":
        assert len(email) > 150
        assert user.username.startswith("user_")
    assert user.kinwise_identity.email == email


def test_address_held_outside_the_package_is_never_a_500(api: Any) -> None:
    """A user created before the package (not backfilled) keeps the address.

    With ``auth.User`` only its username collides, and a generated one is used;
    with a unique ``email`` column the address reads as taken.
    """
    user_model = get_user_model()
    separate_username = user_model.get_email_field_name() != user_model.USERNAME_FIELD
    user_model._default_manager.create_user(
        **{user_model.USERNAME_FIELD: "bob@example.com"}, password=PASSWORD
    )

    response = api.post(URL, register_body("bob@example.com"), format="json")

    assert response.status_code == 201
    if separate_username:
        user = EmailIdentity.objects.get(email="bob@example.com").user
        assert user.username.startswith("user_")
        assert "verify-email?token=" in mail.outbox[0].body
    else:
        assert users_with("bob@example.com").count() == 1
        assert not EmailIdentity.objects.exists()
        (message,) = mail.outbox
        assert "already uses it" in message.body


# --- validation ---------------------------------------------------------------


def test_password_mismatch(api: Any) -> None:
    response = api.post(
        URL, register_body(password_confirm="something-else-42"), format="json"
    )

    assert response.status_code == 400
    assert response.data == {"password_confirm": ["Passwords do not match."]}
    assert not OutboxEmail.objects.exists()


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short1", "too short"),
        ("password123", "too common"),
        ("83749275019283", "entirely numeric"),
        ("new@example.com", "too similar"),
    ],
)
def test_password_validators_apply(api: Any, password: str, fragment: str) -> None:
    body = register_body(password=password, password_confirm=password)

    response = api.post(URL, body, format="json")

    assert response.status_code == 400
    assert any(fragment in message for message in response.data["password"])
    assert not users_with("new@example.com").exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "new@example.com"},
        {**register_body(), "email": 12345678},
        {**register_body(), "email": ["a@example.com"]},
        {**register_body(), "email": {"x": 1}},
        {**register_body(), "email": None},
        {**register_body(), "email": True},
        {**register_body(), "password": 12345678, "password_confirm": 12345678},
        {**register_body(), "email": "not-an-email"},
        {**register_body(), "email": "a\r\nBcc: x@evil.com@example.com"},
        {**register_body(), "email": ("a" * 250) + "@example.com"},
        {**register_body(), "first_name": "Eve\r\nBcc: x@evil.com"},
        {**register_body(), "first_name": "x" * 151},
        {**register_body(), "first_name": "nul\x00"},
        {
            **register_body(),
            "password": "x" * 2000,
            "password_confirm": "x" * 2000,
        },
    ],
)
def test_malformed_bodies_are_400(api: Any, body: Any) -> None:
    response = api.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    assert not OutboxEmail.objects.exists()


def test_list_body_is_400(api: Any) -> None:
    response = api.post(URL, [register_body()], format="json")

    assert response.status_code == 400


def test_invalid_json_is_400_parse_error(api: Any) -> None:
    response = api.post(URL, b'{"email": ', content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_form_body_is_415(api: Any) -> None:
    response = api.post(URL, register_body())  # multipart

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_oversized_body_is_413(api: Any) -> None:
    body = b'{"email": "' + b"a" * (70 * 1024) + b'"}'

    response = api.post(URL, body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is too large.",
        "code": "request_too_large",
    }


def test_host_drf_defaults_do_not_leak_in(api: Any) -> None:
    # tests/settings.py sets session auth + CSRF, IsAuthenticated, form parsers and
    # a 1/day anonymous throttle; the endpoint ignores all of them.
    api = type(api)(enforce_csrf_checks=True)
    for n in range(2):
        response = api.post(URL, register_body(f"u{n}@example.com"), format="json")
        assert response.status_code == 201


# --- rate limits --------------------------------------------------------------


def test_ip_limit_is_3_per_hour(api: Any) -> None:
    for n in range(3):
        response = api.post(URL, register_body(f"u{n}@example.com"), format="json")
        assert response.status_code == 201

    response = api.post(URL, register_body("u9@example.com"), format="json")

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 0 < int(response["Retry-After"]) <= 3600
    assert not users_with("u9@example.com").exists()


def test_email_limit_holds_across_ips_and_case(api: Any) -> None:
    variants = ["x@example.com", "X@example.com", "x@EXAMPLE.com"]
    for n, email in enumerate(variants):
        response = api.post(
            URL, register_body(email), format="json", REMOTE_ADDR=f"10.0.0.{n}"
        )
        assert response.status_code == 201

    response = api.post(
        URL, register_body("X@Example.Com"), format="json", REMOTE_ADDR="10.0.0.9"
    )

    assert response.status_code == 429
    assert "Retry-After" in response


def test_forwarded_for_does_not_escape_the_ip_limit(api: Any) -> None:
    for n in range(4):
        response = api.post(
            URL,
            register_body(f"u{n}@example.com"),
            format="json",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
        )

    assert response.status_code == 429


@override_settings(
    KINWISE_AUTH={
        "FRONTEND_URL": "https://app.example.com",
        "RATE_LIMITS": {"register": {"ip": "1/m", "email": None}},
    }
)
def test_limits_are_settings(api: Any) -> None:
    first = api.post(URL, register_body("a@example.com"), format="json")
    second = api.post(URL, register_body("b@example.com"), format="json")

    assert (first.status_code, second.status_code) == (201, 429)


def test_a_taken_address_costs_what_a_new_one_does(
    api: Any, make_user: Any, broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.auth.hashers import get_hasher
    from django.db.models.signals import post_save

    make_user("taken@example.com")
    users_before = get_user_model()._default_manager.count()
    hasher = type(get_hasher())
    hashes: list[int] = []
    original = hasher.encode
    monkeypatch.setattr(
        hasher,
        "encode",
        lambda self, *a, **k: hashes.append(1) or original(self, *a, **k),
    )
    saved: list[Any] = []
    post_save.connect(
        lambda **kw: saved.append(kw["instance"]), weak=False, dispatch_uid="t"
    )
    try:
        api.post(URL, register_body("taken@example.com"), format="json")
        taken = (len(hashes), len(broker), list(saved))
        hashes.clear()
        broker.clear()
        api.post(
            URL,
            register_body("fresh@example.com"),
            format="json",
            REMOTE_ADDR="10.9.9.9",
        )
        fresh = (len(hashes), len(broker))
    finally:
        post_save.disconnect(dispatch_uid="t")

    assert taken[:2] == fresh == (1, 1)
    # The throwaway account was rolled back and no host receiver saw it.
    assert not [obj for obj in taken[2] if obj.__class__ is get_user_model()]
    assert get_user_model()._default_manager.count() == users_before + 1
