"""Second factors: the sealed TOTP secret, recovery codes, and enrolling them
(DESIGN.md, "Multi-factor authentication and step-up")."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from kinwise_auth import crypto
from kinwise_auth.models import Authenticator, AuthEvent, OutboxEmail, RecoveryCode
from kinwise_auth.services.factors import recovery_codes, totp

from .conftest import PASSWORD, session_tokens

# Sessions' reauthentication and the cache are read after commits.
pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


@pytest.fixture
def client(alice: Any) -> APIClient:
    """Alice, signed in."""
    api = APIClient()
    api.default_format = "json"
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {session_tokens(alice)['access']}")
    return api


def now_code(secret: str, offset: int = 0) -> str:
    step = pyotp.TOTP(secret).timecode(timezone.now()) + offset
    return totp.code_at(secret, step)


def set_up(client: APIClient) -> dict[str, Any]:
    response = client.post(AUTH + "mfa/totp/setup/", {"password": PASSWORD})
    assert response.status_code == 200, response.content
    return dict(response.json())


def enable(client: APIClient) -> tuple[str, list[str]]:
    secret = set_up(client)["secret"]
    response = client.post(AUTH + "mfa/totp/confirm/", {"code": now_code(secret)})
    assert response.status_code == 200, response.content
    return secret, response.json()["recovery_codes"]


# --- sealing ---------------------------------------------------------------------


def test_a_sealed_value_opens_for_its_context_only() -> None:
    sealed = crypto.seal("JBSWY3DPEHPK3PXP", context="totp:1")

    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert crypto.unseal(sealed, context="totp:1") == crypto.Opened(
        "JBSWY3DPEHPK3PXP", stale=False
    )
    with pytest.raises(crypto.SealError):
        crypto.unseal(sealed, context="totp:2")  # copied onto another user's row


@pytest.mark.parametrize("value", ["", "v1:", "v1:!!!", "v2:AAAA", "v1:" + "A" * 40])
def test_junk_does_not_open(value: str) -> None:
    with pytest.raises(crypto.SealError):
        crypto.unseal(value, context="totp:1")


def test_a_value_sealed_under_a_fallback_key_opens_stale(settings: Any) -> None:
    settings.SECRET_KEY = "old-key-" + "x" * 50
    sealed = crypto.seal("seed", context="c")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = (
        "new-key-" + "y" * 50,
        [settings.SECRET_KEY],
    )

    assert crypto.unseal(sealed, context="c") == crypto.Opened("seed", stale=True)
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(crypto.SealError):
        crypto.unseal(sealed, context="c")


def test_the_totp_secret_is_sealed_again_under_the_new_key(
    client: APIClient, alice: Any, settings: Any
) -> None:
    secret, _ = enable(client)
    old = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "rotated-" + "z" * 50, [old]
    authenticator = Authenticator.objects.get(user=alice)
    before = authenticator.secret

    assert totp.opened(authenticator) == secret

    authenticator.refresh_from_db()
    assert authenticator.secret != before
    settings.SECRET_KEY_FALLBACKS = []
    assert totp.opened(authenticator) == secret


# --- TOTP codes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-2, False), (-1, True), (0, True), (1, True), (2, False)]
)
def test_one_step_of_clock_skew_either_way(offset: int, accepted: bool) -> None:
    secret = totp.new_secret()
    now = timezone.now()
    step = pyotp.TOTP(secret).timecode(now) + offset

    found = totp.matching_step(secret, totp.code_at(secret, step), now)

    assert (found == step) is accepted
    assert len(secret) == 32  # base32: 160 bits


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"])
def test_a_malformed_code_matches_nothing(code: str) -> None:
    assert totp.matching_step(totp.new_secret(), code, timezone.now()) is None


# --- recovery codes --------------------------------------------------------------


def test_recovery_codes_carry_60_bits_and_read_forgivingly(alice: Any) -> None:
    codes = recovery_codes.issue(alice)

    assert len(codes) == len(set(codes)) == 10
    assert all(re.fullmatch(r"[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}", c) for c in codes)
    assert crypto.recovery_code_key(" AB0I-L1OX-YZ12 ") == "ab01110xyz12"
    assert crypto.recovery_code_key("abc") is None
    hashes = set(RecoveryCode.objects.values_list("code_hash", flat=True))
    assert not any(code.replace("-", "") in "".join(hashes) for code in codes)


def test_a_recovery_code_works_once_for_its_own_user(
    alice: Any, make_user: Any
) -> None:
    bob = make_user("bob@example.com")
    code = recovery_codes.issue(alice)[0]

    assert not recovery_codes.use(bob, code)
    assert recovery_codes.use(alice, code.upper().replace("-", " "))
    assert not recovery_codes.use(alice, code)
    assert recovery_codes.left(alice) == 9


def test_a_new_set_kills_the_old(alice: Any) -> None:
    old = recovery_codes.issue(alice)
    new = recovery_codes.issue(alice)

    assert not recovery_codes.use(alice, old[0])
    assert recovery_codes.use(alice, new[0])


# --- enrolment endpoints ------------------------------------------------------------


def test_setup_needs_a_proof(client: APIClient) -> None:
    bare = client.post(AUTH + "mfa/totp/setup/", {})
    wrong = client.post(AUTH + "mfa/totp/setup/", {"password": "not-it-at-all"})

    assert bare.status_code == 403
    assert bare.json()["code"] == "reauthentication_required"
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "invalid_credentials"
    assert not Authenticator.objects.exists()


def test_a_recent_reauthentication_stands_in_for_the_password(
    client: APIClient,
) -> None:
    assert (
        client.post(AUTH + "reauthenticate/", {"password": PASSWORD}).status_code == 200
    )

    response = client.post(AUTH + "mfa/totp/setup/", {})

    assert response.status_code == 200


def test_setup_offers_a_secret_an_app_can_scan_and_keeps_it_sealed(
    client: APIClient, alice: Any
) -> None:
    answer = set_up(client)

    assert set(answer) == {"secret", "otpauth_url", "qr_svg", "expires_in"}
    assert answer["otpauth_url"].startswith("otpauth://totp/")
    assert f"secret={answer['secret']}" in answer["otpauth_url"]
    assert "alice%40example.com" in answer["otpauth_url"]
    assert answer["qr_svg"].startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert answer["expires_in"] == 600
    row = Authenticator.objects.get(user=alice)
    assert row.confirmed_at is None and not row.secret
    assert answer["secret"] not in row.pending_secret
    # Not enabled yet: nothing changed for sign-in.
    assert client.get(AUTH + "mfa/").json()["totp"] is None


def test_a_code_of_the_app_enables_it_with_ten_recovery_codes(
    client: APIClient, alice: Any, broker: Any
) -> None:
    secret = set_up(client)["secret"]
    wrong = client.post(AUTH + "mfa/totp/confirm/", {"code": now_code(secret, 5)})
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "invalid_code"
    assert AuthEvent.objects.filter(
        event_type="mfa_change_failed", extra__reason="invalid_code"
    ).exists()

    response = client.post(AUTH + "mfa/totp/confirm/", {"code": now_code(secret)})

    assert response.status_code == 200
    assert len(response.json()["recovery_codes"]) == 10
    status = client.get(AUTH + "mfa/").json()
    assert status["totp"]["enabled_at"] and status["recovery_codes_left"] == 10
    assert status["passkeys"] == 0
    row = Authenticator.objects.get(user=alice)
    assert row.is_enabled and row.last_step is not None
    assert AuthEvent.objects.filter(
        event_type="mfa_changed", extra={"change": "totp_enabled"}
    ).exists()
    broker.drain()
    assert "authenticator app was just set up" in mail.outbox[-1].body
    # The set-up is spent.
    again = client.post(AUTH + "mfa/totp/confirm/", {"code": now_code(secret)})
    assert again.json()["code"] == "mfa_setup_required"


def test_a_set_up_left_for_ten_minutes_is_gone(client: APIClient) -> None:
    secret = set_up(client)["secret"]
    Authenticator.objects.update(pending_until=timezone.now() - timedelta(seconds=1))

    response = client.post(AUTH + "mfa/totp/confirm/", {"code": now_code(secret)})

    assert response.status_code == 400
    assert response.json()["code"] == "mfa_setup_required"


def test_a_second_app_replaces_the_first_only_once_confirmed(
    client: APIClient,
) -> None:
    first, codes = enable(client)
    second = set_up(client)["secret"]
    row = Authenticator.objects.get()
    assert totp.opened(row) == first  # still the first until confirmed

    response = client.post(AUTH + "mfa/totp/confirm/", {"code": now_code(second)})

    assert response.status_code == 200
    assert "recovery_codes" not in response.json()  # the set in hand stays good
    assert totp.opened(Authenticator.objects.get()) == second
    assert recovery_codes.left(Authenticator.objects.get().user) == len(codes)


def test_removing_the_app_needs_a_proof_and_takes_the_codes_along(
    client: APIClient, alice: Any, broker: Any
) -> None:
    enable(client)
    assert client.delete(AUTH + "mfa/totp/", {}, format="json").status_code == 403

    response = client.delete(AUTH + "mfa/totp/", {"password": PASSWORD}, format="json")

    assert response.status_code == 204
    assert client.get(AUTH + "mfa/").json() == {
        "totp": None,
        "recovery_codes_left": 0,
        "passkeys": 0,
    }
    again = client.delete(AUTH + "mfa/totp/", {"password": PASSWORD}, format="json")
    assert again.status_code == 404
    assert OutboxEmail.objects.filter(
        kind=OutboxEmail.Kind.MFA_CHANGED, context={"change": "totp_disabled"}
    ).exists()


def test_new_recovery_codes_need_a_factor_and_kill_the_old(
    client: APIClient, alice: Any
) -> None:
    none = client.post(AUTH + "mfa/recovery-codes/", {"password": PASSWORD})
    assert none.status_code == 400
    assert none.json()["code"] == "mfa_not_enabled"
    _, old = enable(client)

    response = client.post(AUTH + "mfa/recovery-codes/", {"password": PASSWORD})

    assert response.status_code == 200
    new = response.json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert not recovery_codes.use(alice, old[0])
    assert recovery_codes.use(alice, new[0])


def test_the_secrets_are_in_no_row_in_clear(client: APIClient) -> None:
    secret, codes = enable(client)
    rows = " ".join(
        str(values)
        for model in (Authenticator, RecoveryCode, AuthEvent, OutboxEmail)
        for values in model.objects.values()
    )

    assert secret not in rows
    assert not [code for code in codes if code in rows or code.replace("-", "") in rows]


def test_a_deactivating_deletion_takes_the_factors_along(
    client: APIClient, alice: Any, settings: Any
) -> None:
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "ACCOUNT_DELETION": "deactivate"}
    enable(client)

    response = client.post(AUTH + "account/delete/", {"password": PASSWORD})

    assert response.status_code == 204
    assert not Authenticator.objects.filter(user=alice).exists()
    assert not RecoveryCode.objects.filter(user=alice).exists()
