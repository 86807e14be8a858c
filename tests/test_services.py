"""The services called directly, without HTTP: what they return, raise and write."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken

from kinwise_auth import services
from kinwise_auth.errors import (
    AuthError,
    EmailNotVerified,
    InvalidCredentials,
    InvalidToken,
    TokenExpired,
    TokenNotValid,
)
from kinwise_auth.models import AuthEvent, EmailIdentity, LinkToken, OutboxEmail
from kinwise_auth.services.secrets import mint_link

from .conftest import PASSWORD, session_tokens

pytestmark = pytest.mark.django_db

META = services.RequestMeta(ip="192.0.2.10", user_agent="service-test")


def events() -> list[tuple[str, Any]]:
    return list(AuthEvent.objects.order_by("pk").values_list("event_type", "user_id"))


def verification_link(user: Any, *, expires_in: float = 3600) -> str:
    """A fresh verification link of ``user``; earlier ones are superseded."""
    return mint_link(
        user=user,
        purpose=LinkToken.Purpose.VERIFY_EMAIL,
        valid_for=dt.timedelta(seconds=expires_in),
    )


# --- verify_email ----------------------------------------------------------------


def test_verify_email_activates_a_pending_account_once(make_user: Any) -> None:
    user = make_user("pending@example.com", verified=False)
    token = verification_link(user)

    first = services.verify_email(token=token, meta=META)
    again = services.verify_email(token=token, meta=META)

    assert (first.user.pk, first.already_verified) == (user.pk, False)
    assert (again.user.pk, again.already_verified) == (user.pk, True)
    user.refresh_from_db()
    assert user.is_active
    assert EmailIdentity.objects.get(user=user).verified_at is not None
    assert list(OutboxEmail.objects.values_list("kind", "recipient")) == [
        (OutboxEmail.Kind.WELCOME, "pending@example.com")
    ]
    assert events() == [("email_verified", user.pk)]
    assert AuthEvent.objects.get().ip == "192.0.2.10"


def test_verify_email_refuses_unknown_superseded_and_expired_tokens(
    make_user: Any,
) -> None:
    user = make_user("pending@example.com", verified=False)
    superseded = verification_link(user)
    expired = verification_link(user, expires_in=-1)  # supersedes the first

    with pytest.raises(InvalidToken):
        services.verify_email(token="x" * 43, meta=META)
    with pytest.raises(InvalidToken):
        services.verify_email(token=superseded, meta=META)
    with pytest.raises(TokenExpired):
        services.verify_email(token=expired, meta=META)
    user.refresh_from_db()
    assert not user.is_active
    assert events() == []


def test_verify_email_leaves_a_deactivated_account_deactivated(
    make_user: Any,
) -> None:
    user = make_user("banned@example.com", active=False)
    token = verification_link(user)

    result = services.verify_email(token=token, meta=META)

    assert result.already_verified
    user.refresh_from_db()
    assert not user.is_active
    assert not OutboxEmail.objects.exists()


# --- resend_verification -----------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "holder"),
    [
        ("Pending@Example.com", "pending"),
        ("active@example.com", "active"),
        ("nobody@example.com", None),
    ],
)
def test_resend_verification_queues_one_row_whatever_the_address(
    make_user: Any, typed: str, holder: str | None
) -> None:
    users = {
        "pending": make_user("pending@example.com", verified=False),
        "active": make_user("active@example.com"),
    }
    user = users[holder] if holder else None

    assert services.resend_verification(email=typed, meta=META) is None

    row = OutboxEmail.objects.get()
    assert row.kind == OutboxEmail.Kind.VERIFY_EMAIL
    assert row.user_id == (user.pk if user else None)
    # To the stored address, not the spelling typed; as typed for no account.
    assert row.recipient == (
        EmailIdentity.objects.get(user=user).email if user else typed
    )
    assert events() == [("verification_requested", user.pk if user else None)]


# --- login_with_password ---------------------------------------------------------


def test_login_with_password_signs_an_active_account_in(make_user: Any) -> None:
    user = make_user("alice@example.com")

    result = services.login_with_password(
        email="ALICE@example.com", password=PASSWORD, meta=META
    )

    assert result.user.pk == user.pk
    assert set(result.tokens) == {"access", "refresh"}
    assert str(AccessToken(result.tokens["access"])["user_id"]) == str(user.pk)
    assert events() == [("login_succeeded", user.pk)]


@pytest.mark.parametrize(
    ("email", "password", "error"),
    [
        ("alice@example.com", "wrong-password-1", InvalidCredentials),
        ("nobody@example.com", PASSWORD, InvalidCredentials),
        ("banned@example.com", PASSWORD, InvalidCredentials),
        ("pending@example.com", "wrong-password-1", InvalidCredentials),
        ("pending@example.com", PASSWORD, EmailNotVerified),
    ],
)
def test_login_with_password_refuses(
    make_user: Any, email: str, password: str, error: type[AuthError]
) -> None:
    make_user("alice@example.com")
    make_user("banned@example.com", active=False)
    make_user("pending@example.com", verified=False)

    with pytest.raises(error):
        services.login_with_password(email=email, password=password, meta=META)

    (event,) = AuthEvent.objects.all()
    assert event.event_type == "login_failed"
    assert event.extra == {"method": "password", "reason": error.code}
    assert not BlacklistedToken.objects.exists()


# --- logout ------------------------------------------------------------------------


def test_logout_blacklists_the_refresh_token_and_accepts_it_again(
    make_user: Any,
) -> None:
    user = make_user("alice@example.com")
    refresh = session_tokens(user)["refresh"]

    services.logout(refresh=refresh, meta=META)
    services.logout(refresh=refresh, meta=META)

    assert BlacklistedToken.objects.count() == 1
    assert events() == [("session_revoked", user.pk), ("logged_out", user.pk)]
    with pytest.raises(TokenNotValid):
        services.parse_refresh(refresh)


@pytest.mark.parametrize("kind", ["junk", "access"])
def test_logout_refuses_what_is_not_a_refresh_token(make_user: Any, kind: str) -> None:
    user = make_user("alice@example.com")
    token = "x.y.z" if kind == "junk" else session_tokens(user)["access"]

    with pytest.raises(InvalidToken):
        services.logout(refresh=token, meta=META)
    assert not BlacklistedToken.objects.exists()


# --- session refresh ---------------------------------------------------------------


def test_refresh_session_issues_an_access_token(make_user: Any) -> None:
    user = make_user("alice@example.com")
    token = services.parse_refresh(session_tokens(user)["refresh"])

    tokens = services.refresh_session(token, meta=META)

    assert set(tokens) == {"access"}
    assert str(AccessToken(tokens["access"])["user_id"]) == str(user.pk)
    assert services.refresh_token_user_id(token) == str(user.pk)


def test_refresh_session_rotates_once_with_the_blacklist(
    make_user: Any, settings: Any
) -> None:
    settings.SIMPLE_JWT = {
        "ROTATE_REFRESH_TOKENS": True,
        "BLACKLIST_AFTER_ROTATION": True,
    }
    user = make_user("alice@example.com")
    old = session_tokens(user)["refresh"]

    tokens = services.refresh_session(services.parse_refresh(old), meta=META)

    assert set(tokens) == {"access", "refresh"}
    assert tokens["refresh"] != old
    with pytest.raises(TokenNotValid):
        services.parse_refresh(old)
    services.parse_refresh(tokens["refresh"])


@pytest.mark.parametrize("fate", ["deleted", "deactivated"])
def test_refresh_session_refuses_a_user_who_may_no_longer_sign_in(
    make_user: Any, fate: str
) -> None:
    user = make_user("alice@example.com")
    token = services.parse_refresh(session_tokens(user)["refresh"])
    if fate == "deleted":
        user.delete()
    else:
        user.is_active = False
        user.save(update_fields=["is_active"])

    with pytest.raises(TokenNotValid):
        services.refresh_session(token, meta=META)


def test_parse_refresh_refuses_junk() -> None:
    with pytest.raises(TokenNotValid):
        services.parse_refresh("not-a-token")


# --- spend_like_a_new_account ------------------------------------------------------


def test_a_throwaway_account_leaves_nothing_even_when_its_insert_fails(
    make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from django.contrib.auth import get_user_model
    from django.db import transaction

    from kinwise_auth.services import identities

    fixed = uuid.UUID(int=7)
    taken = f"{fixed.hex}@invalid.invalid"
    make_user(taken)  # holds the placeholder address the throwaway will use
    monkeypatch.setattr(identities.uuid, "uuid4", lambda: fixed)
    users = get_user_model()._default_manager

    with transaction.atomic():
        identities.spend_like_a_new_account(PASSWORD)
        # The failed insert was rolled back to the savepoint: the transaction
        # goes on, and commits what the caller does next.
        EmailIdentity.objects.filter(email=taken).update(email=taken.upper())

    assert users.count() == 1
    assert EmailIdentity.objects.get().email == taken.upper()


@pytest.mark.django_db(transaction=True)
def test_a_throwaway_account_needs_the_callers_transaction() -> None:
    from django.db.transaction import TransactionManagementError

    from kinwise_auth.services import identities

    with pytest.raises(TransactionManagementError):
        identities.spend_like_a_new_account(PASSWORD)
