"""Passkeys (DESIGN.md, "Passkeys (WebAuthn)"): registration, passwordless
sign-in, second factor and step-up, answered by a software authenticator whose
answers py_webauthn's own verification accepts first."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import options_to_json_dict

from kinwise_auth import relying_party
from kinwise_auth.models import (
    Authenticator,
    AuthEvent,
    MfaChallenge,
    OutboxEmail,
    Passkey,
    PasskeyChallenge,
    RecoveryCode,
    Session,
)
from kinwise_auth.services.factors import totp

from .conftest import PASSWORD, session_tokens
from .webauthn_device import SoftwareAuthenticator, b64, unb64

pytestmark = pytest.mark.django_db(transaction=True)

AUTH = "/api/v1/auth/"
ORIGIN = "https://app.example.com"  # tests.settings' FRONTEND_URL
RP_ID = "app.example.com"


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice@example.com")


@pytest.fixture
def device() -> SoftwareAuthenticator:
    return SoftwareAuthenticator(origin=ORIGIN)


def signed_in(user: Any) -> APIClient:
    api = APIClient()
    api.default_format = "json"
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {session_tokens(user)['access']}")
    return api


@pytest.fixture
def client(alice: Any) -> APIClient:
    return signed_in(alice)


def creation_options(client: APIClient) -> dict[str, Any]:
    response = client.post(AUTH + "passkeys/register/options/", {"password": PASSWORD})
    assert response.status_code == 200, response.content
    return dict(response.json()["options"])


def register(client: APIClient, device: SoftwareAuthenticator, **kw: Any) -> Any:
    credential = device.create(creation_options(client), **kw)
    return client.post(
        AUTH + "passkeys/register/", {"credential": credential, "name": "Laptop"}
    )


@pytest.fixture
def enrolled(client: APIClient, device: SoftwareAuthenticator) -> dict[str, Any]:
    """Alice with one passkey on ``device``."""
    response = register(client, device)
    assert response.status_code == 201, response.content
    return dict(response.json())


def login_options(api: APIClient | None = None) -> dict[str, Any]:
    response = (api or APIClient()).post(AUTH + "passkeys/login/options/")
    assert response.status_code == 200, response.content
    return dict(response.json())


def passkey_login(
    device: SoftwareAuthenticator, options: dict[str, Any] | None = None, **kw: Any
) -> Any:
    options = options or login_options()
    credential = device.get(options["options"], **kw)
    return APIClient().post(
        AUTH + "passkeys/login/",
        {"challenge_id": options["challenge_id"], "credential": credential},
        format="json",
    )


def refused(response: Any) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_credentials", response.content


# --- the software authenticator, against py_webauthn alone ---------------------


def test_the_software_authenticator_passes_py_webauthns_own_checks() -> None:
    device = SoftwareAuthenticator(origin="https://example.org")
    options = generate_registration_options(
        rp_id="example.org", rp_name="Example", user_name="alice", user_id=b"h" * 32
    )
    answer = device.create(options_to_json_dict(options))
    created = verify_registration_response(
        credential=answer,
        expected_challenge=options.challenge,
        expected_rp_id="example.org",
        expected_origin="https://example.org",
        require_user_verification=True,
    )
    assert created.fmt == "none" and created.user_verified
    request = generate_authentication_options(rp_id="example.org")
    assertion = device.get(options_to_json_dict(request))
    verified = verify_authentication_response(
        credential=assertion,
        expected_challenge=request.challenge,
        expected_rp_id="example.org",
        expected_origin="https://example.org",
        credential_public_key=created.credential_public_key,
        credential_current_sign_count=0,
        require_user_verification=True,
    )
    assert verified.new_sign_count == 1 and verified.user_verified
    # ... and a wrong origin fails there too: the device can be wrong on purpose.
    wrong = device.get(options_to_json_dict(request), origin="https://evil.example")
    with pytest.raises(Exception, match="origin"):
        verify_authentication_response(
            credential=wrong,
            expected_challenge=request.challenge,
            expected_rp_id="example.org",
            expected_origin="https://example.org",
            credential_public_key=created.credential_public_key,
            credential_current_sign_count=0,
        )


# --- registration --------------------------------------------------------------


def test_registration_needs_a_proof(client: APIClient) -> None:
    response = client.post(AUTH + "passkeys/register/options/", {})

    assert response.status_code == 403
    assert response.json()["code"] == "reauthentication_required"
    assert not PasskeyChallenge.objects.exists()


def test_a_passkey_is_registered_with_recovery_codes_the_first_time(
    client: APIClient, device: SoftwareAuthenticator, alice: Any
) -> None:
    options = creation_options(client)
    assert options["rp"]["id"] == RP_ID
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["excludeCredentials"] == []
    assert options["timeout"] == 300_000  # five minutes, as the challenge lives
    row = PasskeyChallenge.objects.get()
    assert (
        timedelta(minutes=4) < row.expires_at - timezone.now() <= timedelta(minutes=5)
    )
    handle = unb64(options["user"]["id"])
    assert str(alice.pk).encode() not in handle and b"alice" not in handle

    answer = client.post(
        AUTH + "passkeys/register/",
        {"credential": device.create(options), "name": "Laptop"},
    )

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["name"] == "Laptop" and body["last_used_at"] is None
    assert len(body["recovery_codes"]) == 10
    passkey = Passkey.objects.get(user=alice)
    assert bytes(passkey.credential_id) == device.credentials[0].credential_id
    assert bytes(passkey.user_handle) == handle
    assert OutboxEmail.objects.filter(
        kind=OutboxEmail.Kind.MFA_CHANGED, context__change="passkey_added"
    ).exists()
    assert client.get(AUTH + "mfa/").json()["passkeys"] == 1

    second = register(client, SoftwareAuthenticator(origin=ORIGIN))
    assert second.status_code == 201 and "recovery_codes" not in second.json()
    assert Passkey.objects.filter(user=alice).count() == 2


def test_existing_passkeys_are_excluded(
    client: APIClient, device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    options = creation_options(client)

    assert [unb64(c["id"]) for c in options["excludeCredentials"]] == [
        device.credentials[0].credential_id
    ]
    with pytest.raises(ValueError, match="excluded"):
        device.create(options)


def test_the_challenge_is_stored_only_as_a_keyed_hash(client: APIClient) -> None:
    options = creation_options(client)
    challenge = unb64(options["challenge"])

    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - our own names
            dump.extend(str(row) for row in cursor.fetchall())
    text = "\n".join(dump)
    assert options["challenge"] not in text
    assert challenge.hex() not in text and repr(challenge) not in text


@pytest.mark.parametrize(
    "wrong",
    [
        {"origin": "https://evil.example"},
        {"origin": "http://app.example.com"},
        {"rp_id": "example.com"},
        {"rp_id": "evil.example"},
        {"challenge": b"\x00" * 32},
    ],
    ids=["origin", "scheme", "parent-rp-id", "rp-id", "challenge"],
)
def test_a_wrong_registration_is_refused(
    client: APIClient, device: SoftwareAuthenticator, wrong: dict[str, Any]
) -> None:
    refused(register(client, device, **wrong))
    assert not Passkey.objects.exists()


def test_a_registration_challenge_works_once(
    client: APIClient, device: SoftwareAuthenticator
) -> None:
    options = creation_options(client)
    assert (
        client.post(
            AUTH + "passkeys/register/", {"credential": device.create(options)}
        ).status_code
        == 201
    )
    # A second credential answering the same (spent) challenge.
    other = SoftwareAuthenticator(origin=ORIGIN)
    refused(
        client.post(AUTH + "passkeys/register/", {"credential": other.create(options)})
    )


def test_a_refused_answer_spends_the_challenge(
    client: APIClient, device: SoftwareAuthenticator
) -> None:
    options = creation_options(client)
    refused(
        client.post(
            AUTH + "passkeys/register/",
            {"credential": device.create(options, origin="https://evil.example")},
        )
    )
    refused(
        client.post(AUTH + "passkeys/register/", {"credential": device.create(options)})
    )


def test_a_challenge_of_another_purpose_or_user_is_refused(
    client: APIClient, device: SoftwareAuthenticator, make_user: Any
) -> None:
    # A sign-in challenge answered as a registration.
    sign_in = login_options()["options"]
    as_creation = {**creation_options(client), "challenge": sign_in["challenge"]}
    refused(
        client.post(
            AUTH + "passkeys/register/", {"credential": device.create(as_creation)}
        )
    )
    # Bob's registration challenge answered in Alice's session.
    bob = signed_in(make_user("bob@example.com"))
    refused(
        client.post(
            AUTH + "passkeys/register/",
            {"credential": device.create(creation_options(bob))},
        )
    )
    assert not Passkey.objects.exists()


def test_an_expired_challenge_is_refused(
    client: APIClient, device: SoftwareAuthenticator
) -> None:
    options = creation_options(client)
    PasskeyChallenge.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    refused(
        client.post(AUTH + "passkeys/register/", {"credential": device.create(options)})
    )


def test_a_credential_id_taken_by_another_account_is_refused(
    device: SoftwareAuthenticator, enrolled: dict[str, Any], make_user: Any
) -> None:
    bob = signed_in(make_user("bob@example.com"))
    taken = device.credentials[0].credential_id
    answer = SoftwareAuthenticator(origin=ORIGIN).create(
        creation_options(bob), credential_id=taken
    )

    refused(bob.post(AUTH + "passkeys/register/", {"credential": answer}))
    assert Passkey.objects.get().user.email == "alice@example.com"  # type: ignore[attr-defined]


# --- passwordless sign-in ---------------------------------------------------------


def test_a_passkey_signs_in_with_no_address_and_no_second_step(
    alice: Any, device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    Authenticator.objects.create(
        user=alice,
        kind=Authenticator.Kind.TOTP,
        secret=totp.sealed(totp.new_secret(), alice.pk),
        confirmed_at=timezone.now(),
    )
    options = login_options()
    assert (
        "allowCredentials" not in options["options"]
        or not options["options"]["allowCredentials"]
    )
    assert options["options"]["userVerification"] == "required"
    assert options["options"]["rpId"] == RP_ID

    response = passkey_login(device, options)

    assert response.status_code == 200, response.content
    assert set(response.json()) == {"access", "refresh", "user"}
    assert response.json()["user"]["email"] == "alice@example.com"
    session = Session.objects.exclude(method="password").get()
    assert session.method == "passkey"
    passkey = Passkey.objects.get()
    assert passkey.sign_count == 1 and passkey.last_used_at is not None


def test_an_unknown_passkey_is_invalid_credentials(
    enrolled: dict[str, Any],
) -> None:
    stranger = SoftwareAuthenticator(origin=ORIGIN)
    stranger.create(
        {"rp": {"id": RP_ID}, "user": {"id": b64(b"x" * 32)}, "challenge": b64(b"c")}
    )

    refused(passkey_login(stranger))


@pytest.mark.parametrize(
    "wrong",
    [
        {"user_verified": False},
        {"origin": "https://evil.example"},
        {"rp_id": "evil.example"},
        {"challenge": b"\x01" * 32},
    ],
    ids=["no-user-verification", "origin", "rp-id", "challenge"],
)
def test_a_wrong_sign_in_is_refused(
    device: SoftwareAuthenticator, enrolled: dict[str, Any], wrong: dict[str, Any]
) -> None:
    refused(passkey_login(device, **wrong))
    assert Session.objects.filter(method="passkey").count() == 0


def test_a_sign_in_challenge_works_once(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    options = login_options()
    assert passkey_login(device, options).status_code == 200

    refused(passkey_login(device, options))


def test_a_challenge_id_names_its_own_challenge(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    first, second = login_options(), login_options()
    answer = device.get(first["options"])

    refused(
        APIClient().post(
            AUTH + "passkeys/login/",
            {"challenge_id": second["challenge_id"], "credential": answer},
            format="json",
        )
    )


def test_a_reauthentication_challenge_does_not_sign_in(
    client: APIClient, device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    step_up = client.post(AUTH + "reauthenticate/passkey/options/").json()["options"]
    options = login_options()

    refused(passkey_login(device, options, challenge=unb64(step_up["challenge"])))


def test_a_sign_count_going_back_is_refused_and_audited(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    assert passkey_login(device, sign_count=5).status_code == 200

    refused(passkey_login(device, sign_count=5))
    refused(passkey_login(device, sign_count=3))

    event = AuthEvent.objects.filter(event_type="passkey_sign_count_regressed")
    assert event.count() == 2
    assert event.first().extra["stored"] == 5  # type: ignore[union-attr]
    assert Passkey.objects.get().sign_count == 5
    assert passkey_login(device, sign_count=6).status_code == 200


def test_a_forged_answer_with_a_lower_count_is_not_taken_for_a_clone(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    assert passkey_login(device, sign_count=5).status_code == 200
    options = login_options()
    answer = device.get(options["options"], sign_count=2)
    answer["response"]["signature"] = b64(b"\x30\x06\x02\x01\x01\x02\x01\x01")

    refused(
        APIClient().post(
            AUTH + "passkeys/login/",
            {"challenge_id": options["challenge_id"], "credential": answer},
            format="json",
        )
    )
    assert not AuthEvent.objects.filter(
        event_type="passkey_sign_count_regressed"
    ).exists()


def test_an_answer_for_another_user_handle_is_refused(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    device.credentials[0].user_handle = b"someone else" * 2

    refused(passkey_login(device))


def test_a_synced_passkey_keeps_no_count_and_signs_in_again(
    client: APIClient,
) -> None:
    synced = SoftwareAuthenticator(origin=ORIGIN, counting=False)
    assert register(client, synced).status_code == 201

    assert passkey_login(synced).status_code == 200
    assert passkey_login(synced).status_code == 200


def test_a_deactivated_account_cannot_sign_in_with_its_passkey(
    alice: Any, device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    alice.is_active = False
    alice.save()

    refused(passkey_login(device))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"challenge_id": "not-a-uuid", "credential": {}},
        {"challenge_id": "00000000-0000-0000-0000-000000000000", "credential": []},
        {"challenge_id": "00000000-0000-0000-0000-000000000000", "credential": {}},
        {
            "challenge_id": "00000000-0000-0000-0000-000000000000",
            "credential": {"rawId": "!!", "response": {"clientDataJSON": "e30"}},
        },
        {
            "challenge_id": "00000000-0000-0000-0000-000000000000",
            "credential": {"rawId": 5, "response": "x"},
        },
    ],
)
def test_junk_is_a_clear_400(body: dict[str, Any]) -> None:
    response = APIClient().post(AUTH + "passkeys/login/", body, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    # A malformed form names its fields; a well-formed one that proves nothing
    # is invalid_credentials.
    assert body.get("code") == "invalid_credentials" or (
        set(body) <= {"challenge_id", "credential"} and body
    ), body


# --- second factor and step-up -----------------------------------------------------


def password_login() -> Any:
    return APIClient().post(
        AUTH + "login/",
        {"email": "alice@example.com", "password": PASSWORD},
        format="json",
    )


def test_a_passkey_is_the_second_factor_of_a_password_sign_in(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    challenge = password_login().json()
    assert challenge["mfa_required"] is True
    assert challenge["methods"] == ["passkey", "recovery_code"]
    api = APIClient()
    options = api.post(
        AUTH + "mfa/authenticate/passkey/options/",
        {"mfa_token": challenge["mfa_token"]},
        format="json",
    ).json()["options"]
    assert [unb64(c["id"]) for c in options["allowCredentials"]] == [
        device.credentials[0].credential_id
    ]

    response = api.post(
        AUTH + "mfa/authenticate/passkey/",
        {"mfa_token": challenge["mfa_token"], "credential": device.get(options)},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert set(response.json()) == {"access", "refresh", "user"}
    assert Session.objects.filter(method="password+passkey").count() == 1


def test_a_wrong_second_factor_passkey_counts_an_attempt(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    token = password_login().json()["mfa_token"]
    options = (
        APIClient()
        .post(
            AUTH + "mfa/authenticate/passkey/options/",
            {"mfa_token": token},
            format="json",
        )
        .json()["options"]
    )

    response = APIClient().post(
        AUTH + "mfa/authenticate/passkey/",
        {
            "mfa_token": token,
            "credential": device.get(options, origin="https://evil.example"),
        },
        format="json",
    )

    refused(response)
    assert MfaChallenge.objects.get().attempts == 1
    # The options' challenge is spent: the right answer to it is refused too.
    again = APIClient().post(
        AUTH + "mfa/authenticate/passkey/",
        {"mfa_token": token, "credential": device.get(options)},
        format="json",
    )
    refused(again)


def test_a_second_factor_challenge_belongs_to_its_sign_in(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    first = password_login().json()["mfa_token"]
    options = (
        APIClient()
        .post(
            AUTH + "mfa/authenticate/passkey/options/",
            {"mfa_token": first},
            format="json",
        )
        .json()["options"]
    )
    second = password_login().json()["mfa_token"]  # supersedes the first

    response = APIClient().post(
        AUTH + "mfa/authenticate/passkey/",
        {"mfa_token": second, "credential": device.get(options)},
        format="json",
    )

    refused(response)


def test_a_passkey_steps_up_and_a_mailbox_no_longer_does(
    client: APIClient, device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    bare = client.delete(AUTH + f"passkeys/{enrolled['id']}/")
    assert bare.status_code == 403
    assert bare.json()["methods"] == ["password", "passkey"]
    assert client.post(AUTH + "reauthenticate/email-code/").status_code == 403

    options = client.post(AUTH + "reauthenticate/passkey/options/").json()["options"]
    assert options["userVerification"] == "required"
    wrong = client.post(
        AUTH + "reauthenticate/",
        {"passkey": device.get(options, user_verified=False)},
    )
    refused(wrong)
    options = client.post(AUTH + "reauthenticate/passkey/options/").json()["options"]
    step_up = client.post(AUTH + "reauthenticate/", {"passkey": device.get(options)})
    assert step_up.status_code == 200, step_up.content

    assert client.delete(AUTH + f"passkeys/{enrolled['id']}/").status_code == 204
    assert not Passkey.objects.exists()
    # The last second factor gone, its recovery codes went with it.
    assert not RecoveryCode.objects.filter(superseded_at=None, used_at=None).exists()


# --- list, rename, delete ------------------------------------------------------------


def test_list_rename_and_delete(
    client: APIClient, enrolled: dict[str, Any], make_user: Any
) -> None:
    listed = client.get(AUTH + "passkeys/")
    assert listed.status_code == 200
    assert listed.json() == [
        {
            "id": enrolled["id"],
            "name": "Laptop",
            "created_at": enrolled["created_at"],
            "last_used_at": None,
            "synced": False,
        }
    ]
    url = AUTH + f"passkeys/{enrolled['id']}/"
    renamed = client.patch(url, {"name": "Work laptop", "password": PASSWORD})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Work laptop"
    assert client.patch(url, {"name": "x\ny", "password": PASSWORD}).status_code == 400

    bob = signed_in(make_user("bob@example.com"))
    # Her own id, spelled otherwise, names nothing.
    own = str(enrolled["id"])
    fullwidth = own.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    for key in ("-1", "0", f"+{own}", f"%20{own}", f"{own}.0", fullwidth):
        path = AUTH + f"passkeys/{key}/"
        assert client.delete(path, {"password": PASSWORD}).status_code == 404, key
    for path in (url, AUTH + "passkeys/99999999999999999999999/", AUTH + "passkeys/x/"):
        assert bob.delete(path, {"password": PASSWORD}).status_code == 404
    assert Passkey.objects.count() == 1

    assert client.delete(url, {"password": PASSWORD}).status_code == 204
    assert client.get(AUTH + "passkeys/").json() == []


def test_removing_a_passkey_keeps_the_codes_while_the_app_stays(
    alice: Any, client: APIClient, enrolled: dict[str, Any]
) -> None:
    Authenticator.objects.create(
        user=alice,
        kind=Authenticator.Kind.TOTP,
        secret=totp.sealed(totp.new_secret(), alice.pk),
        confirmed_at=timezone.now(),
    )
    url = AUTH + f"passkeys/{enrolled['id']}/"

    assert client.delete(url, {"password": PASSWORD}).status_code == 204
    assert RecoveryCode.objects.filter(superseded_at=None).count() == 10


def test_a_scrubbed_account_keeps_no_passkey(
    client: APIClient,
    device: SoftwareAuthenticator,
    enrolled: dict[str, Any],
    settings: Any,
) -> None:
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "ACCOUNT_DELETION": "deactivate"}

    response = client.post(AUTH + "account/delete/", {"password": PASSWORD})

    assert response.status_code == 204, response.content
    assert not Passkey.objects.exists()
    refused(passkey_login(device))


# --- settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, None),
        ({"WEBAUTHN_RP_ID": "example.com"}, None),
        (
            {
                "WEBAUTHN_RP_ID": "example.com",
                "WEBAUTHN_ORIGINS": ["https://app.example.com", "https://example.com"],
            },
            None,
        ),
        ({"WEBAUTHN_RP_ID": "other.example"}, "registrable suffix"),
        ({"WEBAUTHN_RP_ID": "com"}, "top-level"),
        ({"WEBAUTHN_RP_ID": "https://example.com"}, "bare domain"),
        ({"FRONTEND_URL": "http://127.0.0.1:8000"}, "IP address"),
        ({"FRONTEND_URL": "http://localhost:8000"}, None),
        ({"WEBAUTHN_ORIGINS": ["http://app.example.com"]}, "neither https"),
        ({"WEBAUTHN_ORIGINS": ["https://evil-app.example.com"]}, "registrable suffix"),
        ({"WEBAUTHN_ORIGINS": ["https://app.example.com/login"]}, "path"),
        (
            {
                "WEBAUTHN_ORIGINS": [
                    "https://app.example.com",
                    "android:apk-key-hash:Wm9vbS1sb29rLWEtZmluZ2VycHJpbnQ",
                ]
            },
            None,
        ),
        ({"WEBAUTHN_ORIGINS": ["android:apk-key-hash:"]}, "android"),
    ],
)
def test_relying_party_problems(
    settings: Any, config: dict[str, Any], problem: str | None
) -> None:
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, **config}

    found = relying_party.problems()

    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0], found


def test_an_explicit_bad_rp_id_is_an_error_a_derived_one_a_warning(
    settings: Any,
) -> None:
    from kinwise_auth.checks import check_webauthn

    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "WEBAUTHN_RP_ID": "other.example"}
    assert [m.id for m in check_webauthn()] == ["kinwise_auth.E013"]
    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "WEBAUTHN_RP_ID": None,
        "FRONTEND_URL": "http://127.0.0.1:8000",
    }
    assert [m.id for m in check_webauthn()] == ["kinwise_auth.W003"]


def test_options_carry_the_configured_relying_party(
    settings: Any, client: APIClient
) -> None:
    settings.KINWISE_AUTH = {
        **settings.KINWISE_AUTH,
        "WEBAUTHN_RP_ID": "example.com",
        "WEBAUTHN_RP_NAME": "Example",
    }
    options = creation_options(client)

    assert options["rp"] == {"id": "example.com", "name": "Example"}
    assert base64.urlsafe_b64decode(options["challenge"] + "==")


# --- what the owner is told ---------------------------------------------------------


def test_the_owner_is_told_of_a_new_passkey_and_of_a_sign_in_with_it(
    device: SoftwareAuthenticator, enrolled: dict[str, Any]
) -> None:
    from django.core import mail

    added = [m for m in mail.outbox if m.subject.startswith("Two-step sign-in")]
    assert len(added) == 1 and "A passkey was just added" in added[0].body
    mail.outbox.clear()

    # From another network than Alice's first session: a new sign-in notice.
    response = APIClient(REMOTE_ADDR="198.51.100.7").post(
        AUTH + "passkeys/login/",
        {
            "challenge_id": (options := login_options())["challenge_id"],
            "credential": device.get(options["options"]),
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    (notice,) = mail.outbox
    assert "198.51.100.7" in notice.body and "passkey" in notice.body, notice.body


# --- hostile answers (found by an attack review; each test written first) -----------


def nested_client_data() -> dict[str, Any]:
    return {
        "id": "AAAA",
        "rawId": "AAAA",
        "type": "public-key",
        "response": {
            "clientDataJSON": b64(b"[" * 20_000),
            "authenticatorData": "AA",
            "signature": "AA",
            "attestationObject": "AA",
        },
    }


def test_client_data_nested_deep_is_refused_not_a_500(
    client: APIClient, enrolled: dict[str, Any]
) -> None:
    hostile = nested_client_data()
    token = password_login().json()["mfa_token"]
    answers = [
        APIClient().post(
            AUTH + "passkeys/login/",
            {"challenge_id": login_options()["challenge_id"], "credential": hostile},
            format="json",
        ),
        client.post(AUTH + "passkeys/register/", {"credential": hostile}),
        client.post(AUTH + "reauthenticate/", {"passkey": hostile}),
        APIClient().post(
            AUTH + "mfa/authenticate/passkey/",
            {"mfa_token": token, "credential": hostile},
            format="json",
        ),
    ]

    for response in answers:
        refused(response)


def test_transports_that_are_not_strings_are_dropped(
    client: APIClient,
) -> None:
    answer = SoftwareAuthenticator(origin=ORIGIN).create(creation_options(client))
    answer["response"]["transports"] = [{"x": 1}, ["usb"], "usb", "carrier-pigeon"]

    response = client.post(AUTH + "passkeys/register/", {"credential": answer})

    assert response.status_code == 201, response.content
    assert Passkey.objects.get().transports == ["usb"]


@pytest.mark.parametrize("length", [1024, 8000])
def test_a_credential_id_over_1023_bytes_is_refused(
    client: APIClient, length: int
) -> None:
    answer = SoftwareAuthenticator(origin=ORIGIN).create(
        creation_options(client),
        credential_id=bytes(range(256)) * (length // 256) + bytes(length % 256),
    )

    refused(client.post(AUTH + "passkeys/register/", {"credential": answer}))
    assert not Passkey.objects.exists()


def test_answers_naming_someone_elses_passkey_neither_lock_them_out_nor_tell(
    device: SoftwareAuthenticator, enrolled: dict[str, Any], settings: Any
) -> None:
    # A credential id is no secret: it is in allowCredentials, in traces.
    taken = b64(device.credentials[0].credential_id)
    unknown = b64(b"no-such-credential")
    answers = {}
    for name, credential_id in (("known", taken), ("unknown", unknown)):
        answers[name] = [
            APIClient(REMOTE_ADDR=f"203.0.113.{n}")
            .post(
                AUTH + "passkeys/login/",
                {
                    "challenge_id": login_options(
                        APIClient(REMOTE_ADDR=f"203.0.113.{n}")
                    )["challenge_id"],
                    "credential": {
                        "id": credential_id,
                        "rawId": credential_id,
                        "type": "public-key",
                        "response": {},
                    },
                },
                format="json",
            )
            .status_code
            for n in range(12)
        ]

    assert answers["known"] == answers["unknown"] == [400] * 12
    assert passkey_login(device).status_code == 200


def test_a_public_key_that_cannot_verify_is_not_registered(
    client: APIClient,
) -> None:
    import cbor2

    answer = SoftwareAuthenticator(origin=ORIGIN).create(creation_options(client))
    attestation = cbor2.loads(unb64(answer["response"]["attestationObject"]))
    auth_data = attestation["authData"]
    # The COSE key is the attested data's tail: an EC2 key on the point (0, 0).
    cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: bytes(32), -3: bytes(32)})
    credential_length = int.from_bytes(auth_data[53:55], "big")
    start = 55 + credential_length
    attestation["authData"] = auth_data[:start] + cose
    answer["response"]["attestationObject"] = b64(cbor2.dumps(attestation))

    refused(client.post(AUTH + "passkeys/register/", {"credential": answer}))
    assert not Passkey.objects.exists()


def at_once(*calls: Any) -> list[Any]:
    """Run ``calls`` in threads released together; their answers."""
    import threading

    from django.db import connections

    barrier = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(index: int, call: Any) -> None:
        try:
            barrier.wait()
            answers[index] = call()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="row locks and concurrent connections: PostgreSQL (what CI runs)",
)
@pytest.mark.parametrize("round_", range(3))
def test_removing_the_last_two_factors_at_once_retires_the_codes(
    alice: Any,
    client: APIClient,
    enrolled: dict[str, Any],
    round_: int,
    broker: Any,  # notices published, not run: an eager task in a thread
    # leaves Celery's process-wide "join would block" flag set behind it
) -> None:
    Authenticator.objects.create(
        user=alice,
        kind=Authenticator.Kind.TOTP,
        secret=totp.sealed(totp.new_secret(), alice.pk),
        confirmed_at=timezone.now(),
    )
    body = {"password": PASSWORD}

    answers = at_once(
        lambda: client.delete(AUTH + f"passkeys/{enrolled['id']}/", body),
        lambda: client.delete(AUTH + "mfa/totp/", body),
    )

    assert [a.status_code for a in answers] == [204, 204]
    live = RecoveryCode.objects.filter(user=alice, used_at=None, superseded_at=None)
    assert not live.exists()


# --- a lost device (found by an attack on the running demo; tests written first) ----


def test_an_operators_reset_signs_the_lost_device_out_and_voids_its_ceremonies(
    alice: Any, device: SoftwareAuthenticator, enrolled: dict[str, Any], broker: Any
) -> None:
    from kinwise_auth.services.mfa_enrolment import reset_factors

    # Whoever holds the lost phone signs in with its passkey, steps up, and
    # keeps creation options for a passkey of their own.
    thief = passkey_login(device).json()
    api = APIClient()
    api.default_format = "json"
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {thief['access']}")
    step_up = api.post(AUTH + "reauthenticate/passkey/options/").json()["options"]
    assert (
        api.post(AUTH + "reauthenticate/", {"passkey": device.get(step_up)}).status_code
        == 200
    )
    kept = creation_options(api)

    assert reset_factors(alice)

    assert api.get(AUTH + "me/").status_code == 401
    refreshed = APIClient().post(
        AUTH + "token/refresh/", {"refresh": thief["refresh"]}, format="json"
    )
    assert refreshed.status_code == 401
    theirs = SoftwareAuthenticator(origin=ORIGIN)
    registered = signed_in(alice).post(
        AUTH + "passkeys/register/", {"credential": theirs.create(kept)}
    )
    refused(registered)
    assert not Passkey.objects.exists()


def test_removing_a_passkey_signs_out_the_sessions_opened_with_one(
    alice: Any,
    client: APIClient,
    device: SoftwareAuthenticator,
    enrolled: dict[str, Any],
) -> None:
    thief = passkey_login(device).json()

    removed = client.delete(
        AUTH + f"passkeys/{enrolled['id']}/", {"password": PASSWORD}
    )

    assert removed.status_code == 204
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {thief['access']}")
    assert api.get(AUTH + "me/").status_code == 401
    # The caller's own session, which proved itself, stays.
    assert client.get(AUTH + "me/").status_code == 200


@pytest.mark.parametrize("ceremony", ["register", "sign_in"])
def test_an_answer_made_in_a_cross_origin_frame_is_refused(
    client: APIClient, device: SoftwareAuthenticator, ceremony: str
) -> None:
    import json

    def framed(answer: dict[str, Any]) -> dict[str, Any]:
        data = json.loads(unb64(answer["response"]["clientDataJSON"]))
        data.update(crossOrigin=True, topOrigin="https://evil.example")
        answer["response"]["clientDataJSON"] = b64(json.dumps(data).encode())
        return answer

    if ceremony == "register":
        answer = framed(device.create(creation_options(client)))
        refused(client.post(AUTH + "passkeys/register/", {"credential": answer}))
        return
    assert register(client, device).status_code == 201
    options = login_options()
    answer = framed(device.get(options["options"]))
    refused(
        APIClient().post(
            AUTH + "passkeys/login/",
            {"challenge_id": options["challenge_id"], "credential": answer},
            format="json",
        )
    )
