"""Security rule 3: single use holds under concurrency, over real HTTP on PostgreSQL.

Twenty client threads, held at a :class:`threading.Barrier` and released together
(:func:`tests.support.racing.race`), each send one request to pytest-django's live
server: a threaded WSGI server whose request threads each open their own
PostgreSQL connection (closed again when the request ends), so the requests
really contend for the rows the package locks.

* ``otp/verify/``: one code, twenty uses -> one sign-in (the ``LoginCode`` row lock).
* ``verify-email/``: one link, twenty uses -> one activation, one welcome email
  (the ``LinkToken`` and ``EmailIdentity`` row locks).
* ``password/reset/confirm/``: one reset link, twenty uses -> one new password, one
  "password changed" notice.
* ``email/change/confirm/``: one email change link, twenty uses -> one move, one
  notice to the old address.
* ``register/``: one address in twenty spellings -> one account (the
  ``EmailIdentity`` unique constraint, the loser's savepoint).
* ``token/refresh/`` with rotation and blacklisting -> one new pair (the
  ``OutstandingToken`` row lock).

Each race runs for ten rounds, each a test of its own on a fresh database (the
transactional ``django_db`` flushes it after every test). The secrets are minted in
the test (:mod:`kinwise_auth.services.secrets`, as the worker mints them) rather
than read from emails: no Celery worker is needed, and none may run them: the
outbox rows the requests write are published to a private ``redis-server`` of this
module's own (``unconsumed_broker``), which no worker consumes (a worker of another
test, still running, would otherwise deliver them while the database is flushed).

Rate limits are switched off (``RATELIMIT_ENABLE = False``): twenty requests from one
IP for one address exceed every default budget (``otp/verify`` allows five per IP and
per email, ``register`` three an hour), so with them on most answers would be 429 and
the race would not be run at all; clearing the cache cannot help within one round.
django-ratelimit reads the setting on every call and the ``settings`` fixture swaps
the process-wide settings object, so the live server's threads see it. The limits
themselves are tested in ``tests/test_ratelimit.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework_simplejwt.token_blacklist.models import (
    BlacklistedToken,
    OutstandingToken,
)
from rest_framework_simplejwt.tokens import RefreshToken

from kinwise_auth.models import (
    AuthEvent,
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
    Session,
)
from kinwise_auth.normalization import normalize_email
from kinwise_auth.services.secrets import mint_link, mint_login_code
from tests.conftest import session_tokens
from tests.support.accounts import PASSWORD, new_address
from tests.support.brokers import publisher_broker
from tests.support.http import Answer
from tests.support.racing import Call
from tests.support.racing import race as race_calls

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLIENTS = 20
ROUNDS = range(10)
VERIFIED = "Email verified successfully"
ALREADY_VERIFIED = "Email already verified"


def race(url: str, payloads: Sequence[dict[str, Any]]) -> list[Answer]:
    """POST every payload to ``url`` at once, one thread each; the answers in order."""
    return race_calls([Call(url, payload) for payload in payloads])


def tally(answers: Sequence[Answer]) -> Counter[tuple[int, Any]]:
    """How many answers had each ``(status, code or message)``: for failure output."""
    return Counter(
        (
            a.status,
            a.code or (a.body.get("message") if isinstance(a.body, dict) else a.body),
        )
        for a in answers
    )


@pytest.fixture(autouse=True)
def _races_setup(
    transactional_db: None, settings: Any, unconsumed_broker: str
) -> Iterator[None]:
    """PostgreSQL (the gate checks it too), no rate limits, an unconsumed broker.

    ``transactional_db`` first: it passes the integration gate or skips.
    """
    assert connection.vendor == "postgresql", connection.vendor
    settings.RATELIMIT_ENABLE = False  # see the module docstring
    with publisher_broker(unconsumed_broker):
        yield


# --- the races ----------------------------------------------------------------


@pytest.mark.parametrize("round_", ROUNDS)
def test_one_login_code_signs_in_once(round_: int, api: str, make_user: Any) -> None:
    address = new_address(f"otp-race-{round_}")
    user = make_user(address)
    code = mint_login_code(user=user)
    login_code = LoginCode.objects.get(user=user)

    answers = race(f"{api}/otp/verify/", [{"email": address, "code": code}] * CLIENTS)

    counts = tally(answers)
    winners = [a for a in answers if a.status == 200]
    assert len(winners) == 1, counts
    assert set(winners[0].body) == {"access", "refresh", "user"}, winners[0].body
    assert winners[0].body["user"]["id"] == user.pk
    losers = [a for a in answers if a.status != 200]
    assert all(a.status == 400 and a.code == "invalid_code" for a in losers), counts

    login_code.refresh_from_db()
    assert login_code.used_at is not None
    assert login_code.attempts == 0  # the right code is never a wrong guess
    # One sign-in: one refresh token issued, one success audited.
    assert OutstandingToken.objects.filter(user=user).count() == 1
    events = Counter(
        AuthEvent.objects.filter(user=user).values_list("event_type", flat=True)
    )
    assert events == {"login_succeeded": 1, "login_failed": CLIENTS - 1}, events


@pytest.mark.parametrize("round_", ROUNDS)
def test_one_link_verifies_once(round_: int, api: str, make_user: Any) -> None:
    address = new_address(f"link-race-{round_}")
    user = make_user(address, verified=False)
    assert not user.is_active
    token = mint_link(user=user, purpose=LinkToken.Purpose.VERIFY_EMAIL)
    link = LinkToken.objects.get(user=user)

    answers = race(f"{api}/verify-email/", [{"token": token}] * CLIENTS)

    counts = tally(answers)
    assert all(a.status == 200 for a in answers), counts
    messages = Counter(a.body["message"] for a in answers)
    assert messages == {VERIFIED: 1, ALREADY_VERIFIED: CLIENTS - 1}, counts
    winner = next(a for a in answers if a.body["message"] == VERIFIED)
    assert winner.body["user"] == {"email": address, "is_active": True}

    user.refresh_from_db()
    assert user.is_active
    link.refresh_from_db()
    assert link.used_at is not None
    assert EmailIdentity.objects.get(user=user).verified_at is not None
    welcome = OutboxEmail.objects.filter(user=user, kind=OutboxEmail.Kind.WELCOME)
    assert welcome.count() == 1
    assert AuthEvent.objects.filter(user=user, event_type="email_verified").count() == 1
    # A used link answers without personal data (security rule 11).
    losers = [a.body for a in answers if a.body["message"] == ALREADY_VERIFIED]
    assert losers == [{"message": ALREADY_VERIFIED}] * (CLIENTS - 1)


@pytest.mark.parametrize("round_", ROUNDS)
def test_one_reset_link_sets_the_password_once(
    round_: int, api: str, make_user: Any
) -> None:
    user = make_user(new_address(f"reset-race-{round_}"))
    token = mint_link(user=user, purpose=LinkToken.Purpose.PASSWORD_RESET)
    new_password = f"another-Staple-horse-{round_}"
    body = {
        "token": token,
        "new_password": new_password,
        "new_password_confirm": new_password,
    }

    answers = race(f"{api}/password/reset/confirm/", [body] * CLIENTS)

    counts = tally(answers)
    winners = [a for a in answers if a.status == 200]
    assert len(winners) == 1, counts
    losers = [a for a in answers if a.status != 200]
    assert all(a.status == 400 and a.code == "invalid_token" for a in losers), counts

    user.refresh_from_db()
    assert user.check_password(new_password)
    assert LinkToken.objects.get(user=user).used_at is not None
    notices = OutboxEmail.objects.filter(
        user=user, kind=OutboxEmail.Kind.PASSWORD_CHANGED
    )
    assert notices.count() == 1
    assert AuthEvent.objects.filter(user=user, event_type="password_reset").count() == 1


@pytest.mark.parametrize("round_", ROUNDS)
def test_one_email_change_link_moves_the_address_once(
    round_: int, api: str, make_user: Any
) -> None:
    old_address = new_address(f"move-race-{round_}")
    moved_to = new_address(f"moved-{round_}")
    user = make_user(old_address)
    token = mint_link(user=user, purpose=LinkToken.Purpose.EMAIL_CHANGE, email=moved_to)

    answers = race(f"{api}/email/change/confirm/", [{"token": token}] * CLIENTS)

    counts = tally(answers)
    winners = [a for a in answers if a.status == 200]
    assert len(winners) == 1, counts
    assert winners[0].body["email"] == moved_to
    losers = [a for a in answers if a.status != 200]
    assert all(a.status == 400 and a.code == "invalid_token" for a in losers), counts

    identity = EmailIdentity.objects.get(user=user)
    assert identity.email_normalized == normalize_email(moved_to)
    user.refresh_from_db()
    assert getattr(user, user.get_email_field_name()) == moved_to
    notices = OutboxEmail.objects.filter(user=user, kind=OutboxEmail.Kind.EMAIL_CHANGED)
    assert list(notices.values_list("recipient", flat=True)) == [old_address]
    assert AuthEvent.objects.filter(user=user, event_type="email_changed").count() == 1


def spellings(address: str) -> list[str]:
    """``CLIENTS`` spellings of ``address`` with one normal form (some repeat)."""
    local, domain = address.split("@")
    forms = [
        f"{local.capitalize()}@{domain.capitalize()}",
        f"{local}@{domain.upper()}",
        address.upper(),
        address,
        f"{local.upper()}@{domain}",
        f"{local.swapcase()}@{domain.title()}",
        f"{local.title()}@{domain.lower()}",
    ]
    assert len({normalize_email(form) for form in forms}) == 1
    return [forms[i % len(forms)] for i in range(CLIENTS)]


@pytest.mark.parametrize("round_", ROUNDS)
def test_one_address_registers_once(round_: int, api: str) -> None:
    address = new_address(f"race-{round_}")
    forms = spellings(address)

    answers = race(
        f"{api}/register/",
        [
            {"email": form, "password": PASSWORD, "password_confirm": PASSWORD}
            for form in forms
        ],
    )

    counts = tally(answers)
    assert all(a.status == 201 for a in answers), counts
    assert [a.body["email"] for a in answers] == forms  # each sees its own spelling
    identities = EmailIdentity.objects.filter(email_normalized=normalize_email(address))
    assert identities.count() == 1
    user_model = get_user_model()
    email_field = user_model.get_email_field_name()
    # The database holds one user: the losers' throwaway accounts were rolled back.
    assert user_model._default_manager.count() == 1
    user = user_model._default_manager.get()
    assert identities.get().user_id == user.pk
    assert normalize_email(getattr(user, email_field)) == normalize_email(address)
    assert not user.is_active
    # Every loser found the winner's pending account after losing and replaced
    # its registration in turn: each request queued a verification email to the
    # one account, at the spelling it had just given it.
    rows = OutboxEmail.objects.values_list("kind", "user_id", "recipient")
    assert Counter((kind, user_id) for kind, user_id, _ in rows) == {
        (OutboxEmail.Kind.VERIFY_EMAIL, user.pk): CLIENTS
    }, list(rows)
    assert {recipient for *_, recipient in rows} <= set(forms)
    assert identities.get().email in forms


@pytest.mark.parametrize("round_", ROUNDS)
def test_one_refresh_token_rotates_once(
    round_: int, api: str, make_user: Any, settings: Any
) -> None:
    # simplejwt rebinds rest_framework_simplejwt.settings.api_settings on
    # setting_changed, and the package reads it there at call time.
    settings.SIMPLE_JWT = {
        "ROTATE_REFRESH_TOKENS": True,
        "BLACKLIST_AFTER_ROTATION": True,
    }
    user = make_user(new_address(f"refresh-race-{round_}"))
    refresh = RefreshToken(session_tokens(user)["refresh"])  # recorded as outstanding
    jti = refresh["jti"]
    assert OutstandingToken.objects.filter(jti=jti).exists()

    answers = race(f"{api}/token/refresh/", [{"refresh": str(refresh)}] * CLIENTS)

    counts = tally(answers)
    winners = [a for a in answers if a.status == 200]
    assert len(winners) == 1, counts
    assert set(winners[0].body) == {"access", "refresh"}, winners[0].body
    assert winners[0].body["refresh"] != str(refresh)
    losers = [a for a in answers if a.status != 200]
    assert all(a.status == 401 and a.code == "token_not_valid" for a in losers), counts

    assert BlacklistedToken.objects.filter(token__jti=jti).count() == 1
    # The old token and the one rotated in: no loser left a token of its own.
    assert OutstandingToken.objects.filter(user=user).count() == 2
    rotated = RefreshToken(winners[0].body["refresh"])
    assert OutstandingToken.objects.filter(jti=rotated["jti"]).exists()
    # Two tabs refreshing at once is no theft: the session lives on, its live
    # token the winner's.
    session = Session.objects.get(user=user)
    assert session.revoked_at is None
    assert session.refresh_jti == rotated["jti"]
