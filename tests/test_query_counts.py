"""Query budgets per endpoint (the request only: delivery runs in the worker).

Every flow that changes an account's secrets or tokens locks its user row first,
then its identity, then the secret (one lock order: security rule 9); the locks
are reads of their own below.

register, new address: identity lookup (locking a holder's user), user, identity,
the account's earlier links superseded, outbox row, audit row.
register, held address: the same six: a pending registration is replaced (user
and identity updated, its links superseded); for a verified one a throwaway user
and identity are inserted and rolled back, so a taken address costs what a new
one does.
verify-email: the token's user (the per-account limit), the user (found by the
token and locked in one statement), identity and token locked, mark token used,
mark identity verified, activate user, welcome outbox row, audit row; a used
token stops after the locks, an unknown one after the reads.
resend-verification: identity lookup, outbox row, audit row, whatever the account.
otp/request: the same three, whatever the account.
otp/verify: identity (its user locked), the identity locked, the live code
(locked), then either the attempt counter, the day's failure counters and a
failure audit row, or marking it used, whether the account has a second factor,
and what a session costs: the outstanding refresh token (blacklist app), the
session row, the audit row and ``last_login``.
login: identity (the backend), whether the account has a second factor, then a
session (its INSERT also decides whether the device is new: then the notice's
outbox row); a failure looks the identity up
again with its locks (the pending check, the day's failure counters) and writes
an audit row; an unknown address stops after the lookup and the audit row.
token/refresh (no rotation): the blacklist check, the user and the session (one
conditional UPDATE); with rotation and blacklisting, the user (locked), the
session rotated (one conditional UPDATE), the old token's outstanding row
(locked), its blacklisting, and the new token's outstanding row.
Sessions: logout revokes the token's (one UPDATE); reset, change and deletion
revoke the account's (read, update); each revocation writes one
``session_revoked`` audit row; me/ asks the cache, not the database.
logout: the blacklist check and the user (simplejwt), the user again, the
session revoked and its audit row, the outstanding row and its blacklisting (get
or create) and the logout's audit row; a token already blacklisted: the
signature, then one read. A refresh with a blacklisted token: the blacklist,
then its session (a replay of a rotated-away token revokes it).
me: the user (JWT authentication); no token: nothing.
resend-verification, password/reset: identity lookup, outbox row, audit row,
whatever the account.
password/reset/confirm: the link's user (per-account limit), user (by the link),
identity and link locked, the password, the link used, the account's other links
and codes superseded (and sign-in challenges), its refresh tokens blacklisted
(read, insert), the notice's
outbox row, an audit row.
password/change: the user (JWT), the identity, the password (the user row's
lock), links, codes and sign-in challenges superseded, refresh tokens
blacklisted (read, insert),
outbox row, audit row, and the new session's outstanding token.
email/change: the user (JWT), the caller's earlier change links superseded, the
new address's identity, outbox row, audit row, taken or free alike.
email/change/confirm: the link's user, user (by the link), identity and link
locked, the new address's holder (a pending one is deleted), the
identity and the user moved (with ``auth.User``, a read that the username is
free), the link used, links, codes and sign-in challenges superseded, the
notice's outbox row, an
audit row.
account/delete: the user (JWT), the user locked, the identity, refresh tokens
blacklisted, audit and goodbye rows, then Django's delete of the user and what
refers to it (in this project: admin log, groups, permissions, identity, links,
codes, authenticators, recovery codes, sign-in challenges; the outstanding
tokens, outbox and audit
rows are kept with the user cleared).
A wrong password on a signed-in endpoint: the user (JWT) and the identity.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from rest_framework.test import APIClient

from .conftest import PASSWORD, register_body

pytestmark = pytest.mark.django_db(transaction=True)

REGISTER = "/api/v1/auth/register/"
VERIFY = "/api/v1/auth/verify-email/"


@pytest.mark.parametrize(
    ("email", "queries"),
    [("new@example.com", 6), ("verified@example.com", 6), ("pending@example.com", 6)],
)
def test_register(
    api: Any, make_user: Any, broker: Any, assert_queries: Any, email: str, queries: int
) -> None:
    make_user("verified@example.com")
    make_user("pending@example.com", verified=False)

    with assert_queries(queries):
        response = api.post(REGISTER, register_body(email), format="json")

    assert response.status_code == 201
    assert len(broker) == 1


def test_verify_email(api: Any, broker: Any, assert_queries: Any) -> None:
    api.post(REGISTER, register_body(), format="json")
    broker.drain()
    token = re.search(r"token=([\w\-]+)", mail.outbox[0].body).group(1)  # type: ignore[union-attr]

    with assert_queries(9):
        assert api.post(VERIFY, {"token": token}, format="json").status_code == 200
    with assert_queries(4):
        assert api.post(VERIFY, {"token": token}, format="json").status_code == 200
    with assert_queries(2):
        assert api.post(VERIFY, {"token": "x" * 43}, format="json").status_code == 400
    with assert_queries(0):
        assert api.post(VERIFY, {"token": 5}, format="json").status_code == 400


def code_from_outbox() -> str:
    match = re.search(r"^\s+(\d{6})$", mail.outbox[-1].body, re.MULTILINE)
    assert match
    return match.group(1)


@pytest.mark.parametrize("email", ["a@example.com", "unknown@example.com"])
def test_otp_request(
    api: Any, make_user: Any, broker: Any, assert_queries: Any, email: str
) -> None:
    make_user("a@example.com")

    with assert_queries(3):
        api.post("/api/v1/auth/otp/request/", {"email": email}, format="json")

    assert len(broker) == 1


def test_otp_verify(api: Any, make_user: Any, broker: Any, assert_queries: Any) -> None:
    make_user("a@example.com")
    api.post("/api/v1/auth/otp/request/", {"email": "a@example.com"}, format="json")
    broker.drain()
    code = code_from_outbox()
    url = "/api/v1/auth/otp/verify/"
    bad = f"{(int(code) + 1) % 10**6:06d}"

    with assert_queries(6):
        api.post(url, {"email": "a@example.com", "code": bad}, format="json")
    with assert_queries(2):
        api.post(url, {"email": "nobody@example.com", "code": code}, format="json")
    with assert_queries(9):
        response = api.post(
            url, {"email": "a@example.com", "code": code}, format="json"
        )
    assert response.status_code == 200


def test_login_and_session(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    make_user("a@example.com")
    url = "/api/v1/auth/login/"

    with assert_queries(5):
        api.post(url, {"email": "a@example.com", "password": "nope"}, format="json")
    with assert_queries(3):
        api.post(url, {"email": "zz@example.com", "password": "nope"}, format="json")
    with assert_queries(6):
        tokens = api.post(
            url, {"email": "a@example.com", "password": PASSWORD}, format="json"
        ).json()
    with assert_queries(3):
        api.post(
            "/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
        )
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    with assert_queries(1):
        assert api.get("/api/v1/auth/me/").status_code == 200
    # A known device on a known network: the session row decided it, no more.
    with assert_queries(6):
        api.post(url, {"email": "a@example.com", "password": PASSWORD}, format="json")
    # A new one: the "new sign-in" email's outbox row too.
    with assert_queries(7):
        api.post(
            url,
            {"email": "a@example.com", "password": PASSWORD},
            format="json",
            REMOTE_ADDR="203.0.113.9",
        )


# --- the other endpoints ----------------------------------------------------------


def sign_in(api: Any, email: str = "a@example.com") -> dict[str, str]:
    """Sign ``email`` in; the client then sends its access token."""
    tokens: dict[str, str] = api.post(
        "/api/v1/auth/login/", {"email": email, "password": PASSWORD}, format="json"
    ).json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    return tokens


def link_from_outbox(path: str) -> str:
    match = re.search(rf"{path}\?token=([\w\-]+)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


@pytest.mark.parametrize("email", ["a@example.com", "p@example.com", "zz@example.com"])
def test_resend_verification(
    api: Any, make_user: Any, broker: Any, assert_queries: Any, email: str
) -> None:
    make_user("a@example.com")
    make_user("p@example.com", verified=False)

    with assert_queries(3):
        response = api.post(
            "/api/v1/auth/resend-verification/", {"email": email}, format="json"
        )

    assert response.status_code == 200
    assert len(broker) == 1


def test_token_refresh_and_logout(
    api: Any, make_user: Any, assert_queries: Any
) -> None:
    make_user("a@example.com")
    tokens = sign_in(api)
    refresh = "/api/v1/auth/token/refresh/"
    logout = "/api/v1/auth/logout/"

    with assert_queries(9):
        assert (
            api.post(logout, {"refresh": tokens["refresh"]}, format="json").status_code
            == 205
        )
    with assert_queries(3):
        assert (
            api.post(logout, {"refresh": tokens["refresh"]}, format="json").status_code
            == 205
        )
    with assert_queries(2):
        assert (
            api.post(refresh, {"refresh": tokens["refresh"]}, format="json").status_code
            == 401
        )
    with assert_queries(0):
        assert (
            api.post(logout, {"refresh": "not-a-jwt"}, format="json").status_code == 400
        )


def test_token_refresh_with_rotation(
    api: Any, make_user: Any, settings: Any, assert_queries: Any
) -> None:
    settings.SIMPLE_JWT = {
        "ROTATE_REFRESH_TOKENS": True,
        "BLACKLIST_AFTER_ROTATION": True,
    }
    make_user("a@example.com")
    tokens = sign_in(api)

    with assert_queries(12):
        response = api.post(
            "/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
        )
    assert response.status_code == 200


def test_me_without_a_token(api: Any, assert_queries: Any) -> None:
    with assert_queries(0):
        assert api.get("/api/v1/auth/me/").status_code == 401


@pytest.mark.parametrize(
    "email", ["a@example.com", "p@example.com", "off@example.com", "zz@example.com"]
)
def test_password_reset(
    api: Any, make_user: Any, broker: Any, assert_queries: Any, email: str
) -> None:
    make_user("a@example.com")
    make_user("p@example.com", verified=False)
    make_user("off@example.com", active=False)

    with assert_queries(3):
        response = api.post(
            "/api/v1/auth/password/reset/", {"email": email}, format="json"
        )

    assert response.status_code == 200
    assert len(broker) == 1


def test_password_reset_confirm(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    make_user("a@example.com")
    sign_in(api)  # a refresh token for the reset to revoke
    api.credentials()
    api.post("/api/v1/auth/password/reset/", {"email": "a@example.com"}, format="json")
    broker.drain()
    token = link_from_outbox("reset-password")
    url = "/api/v1/auth/password/reset/confirm/"
    new = "another-Staple-lamp-42"
    body = {"token": token, "new_password": new, "new_password_confirm": new}

    with assert_queries(2):
        bad = api.post(url, {**body, "token": "x" * 43}, format="json")
    assert bad.status_code == 400
    with assert_queries(16):
        assert api.post(url, body, format="json").status_code == 200
    with assert_queries(4):
        assert api.post(url, body, format="json").status_code == 400


def test_password_change(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    make_user("a@example.com")
    sign_in(api)
    url = "/api/v1/auth/password/change/"
    new = "another-Staple-lamp-42"
    body = {
        "current_password": PASSWORD,
        "new_password": new,
        "new_password_confirm": new,
    }

    with assert_queries(2):
        wrong = api.post(url, {**body, "current_password": "nope"}, format="json")
    assert wrong.status_code == 400
    with assert_queries(13):
        assert api.post(url, body, format="json").status_code == 200


@pytest.mark.parametrize("new_email", ["new@example.com", "b@example.com"])
def test_email_change(
    api: Any, make_user: Any, broker: Any, assert_queries: Any, new_email: str
) -> None:
    make_user("a@example.com")
    make_user("b@example.com")
    sign_in(api)
    url = "/api/v1/auth/email/change/"

    with assert_queries(5):
        response = api.post(
            url, {"new_email": new_email, "password": PASSWORD}, format="json"
        )
    assert response.status_code == 200
    assert len(broker) == 1
    with assert_queries(2):
        wrong = api.post(
            url, {"new_email": new_email, "password": "nope"}, format="json"
        )
    assert wrong.status_code == 400


def test_email_change_confirm(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    make_user("a@example.com")
    sign_in(api)
    api.post(
        "/api/v1/auth/email/change/",
        {"new_email": "new@example.com", "password": PASSWORD},
        format="json",
    )
    broker.drain()
    token = link_from_outbox("confirm-email-change")
    api.credentials()
    url = "/api/v1/auth/email/change/confirm/"

    with assert_queries(2):
        assert api.post(url, {"token": "x" * 43}, format="json").status_code == 400
    # auth.User's username follows the address when it is free: one more read.
    username_follows = get_user_model().USERNAME_FIELD != "email"
    with assert_queries(13 + username_follows):
        assert api.post(url, {"token": token}, format="json").status_code == 200


def test_account_delete(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    make_user("a@example.com")
    sign_in(api)
    url = "/api/v1/auth/account/delete/"

    with assert_queries(2):
        assert api.post(url, {"password": "nope"}, format="json").status_code == 400
    # Django's deletion collector reads every table that cascades from the user,
    # passkeys and their challenges included.
    with assert_queries(26):
        assert api.post(url, {"password": PASSWORD}, format="json").status_code == 204


def test_second_factors(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    """GET mfa/: the user (JWT), the authenticator, the codes left, the passkeys
    counted. A set-up: the user (JWT), the authenticator found or made (a read
    and an insert the first time), its pending secret saved, the address for
    the app's label. Every change of factors locks the user first (one change of
    an account's factors at a time). Confirming: the user, the user locked, the
    authenticator locked, enabled, the codes left, the first set (retire,
    insert), the audit row, the address and the notice's outbox row. New codes:
    the user, the user locked, the factors left, retire, insert, audit, address,
    outbox. Removing: the user, the user locked, the delete, whether a passkey
    is left, the codes retired, audit, address, outbox. (A password is checked
    by hashing: no query.)"""
    import pyotp
    from django.utils import timezone

    from kinwise_auth.services.factors import totp

    make_user("a@example.com")
    sign_in(api)
    body = {"password": PASSWORD}

    with assert_queries(4):
        assert api.get("/api/v1/auth/mfa/").status_code == 200
    with assert_queries(5):
        secret = api.post("/api/v1/auth/mfa/totp/setup/", body, format="json").json()[
            "secret"
        ]
    code = totp.code_at(secret, pyotp.TOTP(secret).timecode(timezone.now()))
    with assert_queries(10):
        response = api.post(
            "/api/v1/auth/mfa/totp/confirm/", {"code": code}, format="json"
        )
    assert response.status_code == 200
    with assert_queries(8):
        assert (
            api.post(
                "/api/v1/auth/mfa/recovery-codes/", body, format="json"
            ).status_code
            == 200
        )
    with assert_queries(8):
        assert (
            api.delete("/api/v1/auth/mfa/totp/", body, format="json").status_code == 204
        )


def test_sign_in_with_a_second_factor(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    """login/ with a factor: identity, the factor, the identity locked (one live
    token per account), earlier challenges retired, the challenge, the audit
    row, the recovery codes left. mfa/authenticate/: the token's owner (the
    per-account limit, kept for the locks), the user and identity locked,
    the challenge locked (with its user), the authenticator locked, its step
    saved, the challenge used, then a session as login/ opens one (outstanding
    token, session row, audit row, last_login). A wrong code: the owner, the
    user, identity and challenge locked, the authenticator, the attempt and
    the day's failure counted, the audit row (and the recovery code tried, when
    it could be one)."""
    import pyotp
    from django.utils import timezone

    from kinwise_auth.models import Authenticator
    from kinwise_auth.services.factors import totp

    user = make_user("a@example.com")
    secret = totp.new_secret()
    Authenticator.objects.create(
        user=user,
        kind=Authenticator.Kind.TOTP,
        secret=totp.sealed(secret, user.pk),
        confirmed_at=timezone.now(),
    )
    body = {"email": "a@example.com", "password": PASSWORD}

    with assert_queries(7):
        token = api.post("/api/v1/auth/login/", body, format="json").json()["mfa_token"]
    url = "/api/v1/auth/mfa/authenticate/"
    with assert_queries(8):
        api.post(url, {"mfa_token": token, "code": "abc"}, format="json")
    code = totp.code_at(secret, pyotp.TOTP(secret).timecode(timezone.now()))
    with assert_queries(11):
        response = api.post(url, {"mfa_token": token, "code": code}, format="json")
    assert response.status_code == 200


def test_passkeys(api: Any, make_user: Any, broker: Any, assert_queries: Any) -> None:
    """Creation options: the user (JWT), earlier challenges retired, the
    challenge, the address, the user handle kept, the passkeys to exclude.
    Registering: the user, the challenge locked and spent, the handle, the user
    locked, the codes left, the passkey, the first codes (retire, insert), the
    audit row, the address and the notice's outbox row. The list: the user and
    the passkeys. Login options: the challenge. A passkey sign-in (limited per
    IP only): the challenge locked and spent, the passkey locked
    (with its user), its count saved, the identity (verified?), then a session
    as login/ opens one, but the factor read (the passkey is both factors)."""
    from .webauthn_device import SoftwareAuthenticator

    make_user("a@example.com")
    sign_in(api)
    device = SoftwareAuthenticator(origin="https://app.example.com")
    with assert_queries(6):
        options = api.post(
            "/api/v1/auth/passkeys/register/options/",
            {"password": PASSWORD},
            format="json",
        ).json()["options"]
    with assert_queries(12):
        response = api.post(
            "/api/v1/auth/passkeys/register/",
            {"credential": device.create(options)},
            format="json",
        )
    assert response.status_code == 201
    with assert_queries(2):
        assert api.get("/api/v1/auth/passkeys/").status_code == 200

    anonymous = APIClient()
    with assert_queries(1):
        found = anonymous.post("/api/v1/auth/passkeys/login/options/").json()
    with assert_queries(9):
        response = anonymous.post(
            "/api/v1/auth/passkeys/login/",
            {
                "challenge_id": found["challenge_id"],
                "credential": device.get(found["options"]),
            },
            format="json",
        )
    assert response.status_code == 200


def test_passkey_second_step_step_up_and_management(
    api: Any, make_user: Any, broker: Any, assert_queries: Any
) -> None:
    """Second-step options: the token's owner (the per-account limit), the
    challenge (with its user), the passkeys allowed, earlier ceremonies of this
    sign-in retired, the new one. The second step: the owner (the limit, kept
    for the locks), the user, identity and challenge locked, the ceremony
    locked and spent, the passkey locked and counted, the sign-in's challenge
    used, then a session as login/ opens one. Step-up
    options: the user (JWT), the passkeys, retire, insert; the step-up: the
    user, the ceremony and the passkey (each locked and written), the session
    marked, the audit row. A rename: the user, the passkey, the recent
    reauthentication, the save, the audit row. A removal: the user, the
    passkey, the recent reauthentication, the user locked, the delete, what
    factors are left, the codes retired, the other sessions a passkey opened
    revoked (read, update, their audit row), the audit row, the address and
    the notice."""
    from .webauthn_device import SoftwareAuthenticator

    make_user("a@example.com")
    sign_in(api)
    device = SoftwareAuthenticator(origin="https://app.example.com")
    body = {"password": PASSWORD}
    options = api.post(
        "/api/v1/auth/passkeys/register/options/", body, format="json"
    ).json()["options"]
    created = api.post(
        "/api/v1/auth/passkeys/register/",
        {"credential": device.create(options)},
        format="json",
    ).json()

    first = (
        APIClient()
        .post(
            "/api/v1/auth/login/",
            {"email": "a@example.com", "password": PASSWORD},
            format="json",
        )
        .json()
    )
    second = APIClient()
    with assert_queries(5):
        options = second.post(
            "/api/v1/auth/mfa/authenticate/passkey/options/",
            {"mfa_token": first["mfa_token"]},
            format="json",
        ).json()["options"]
    with assert_queries(13):
        response = second.post(
            "/api/v1/auth/mfa/authenticate/passkey/",
            {"mfa_token": first["mfa_token"], "credential": device.get(options)},
            format="json",
        )
    assert response.status_code == 200

    with assert_queries(4):
        options = api.post("/api/v1/auth/reauthenticate/passkey/options/").json()[
            "options"
        ]
    with assert_queries(7):
        response = api.post(
            "/api/v1/auth/reauthenticate/",
            {"passkey": device.get(options)},
            format="json",
        )
    assert response.status_code == 200
    url = f"/api/v1/auth/passkeys/{created['id']}/"
    with assert_queries(5):
        assert api.patch(url, {"name": "Phone"}, format="json").status_code == 200
    with assert_queries(13):
        assert api.delete(url, format="json").status_code == 204
