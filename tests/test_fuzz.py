"""Bad input at every endpoint: always a 4xx in the API's error shape, nothing written.

Property-based (hypothesis): JSON that is not an object (arrays, numbers, strings,
null), objects in which at least one required field is missing, null, not a
string, nested, over its length or (addresses) holding a control character, and
raw bytes that are not UTF-8, posted to every endpoint; the signed-in ones with a
valid Bearer token. Every answer must be a 4xx with either ``{"detail", "code"}``
(strings) or DRF's field errors ``{"field": ["message", ...]}``, and no row may be
inserted, updated or deleted: the request is rejected before any service runs, so
not even an audit row is written (the audit records failures of well-formed
requests only). Explicit cases: 1 MB bodies (413), form and multipart bodies (415).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from kinwise_auth import urls
from kinwise_auth.models import (
    AuthEvent,
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
)
from tests.conftest import session_tokens

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings(
        "ignore::hypothesis.errors.NonInteractiveExampleWarning"
    ),
    # Rate limits would answer 429 (a valid 4xx) and hide what is under test.
    pytest.mark.usefixtures("_no_rate_limits"),
]

AUTH = "/api/v1/auth/"

OBJECT = -1  # a field that takes a JSON object (a passkey's answer), not a string
# Body fields of each endpoint: name -> longest accepted length. Optional ones last.
PUBLIC: dict[str, dict[str, int]] = {
    "register/": {
        "email": 254,
        "password": 1024,
        "password_confirm": 1024,
        "first_name": 150,
        "last_name": 150,
    },
    "verify-email/": {"token": 256},
    "resend-verification/": {"email": 254},
    "otp/request/": {"email": 254},
    "otp/verify/": {"email": 254, "code": 16},
    "login/": {"email": 254, "password": 1024},
    "token/refresh/": {"refresh": 4096},
    "logout/": {"refresh": 4096},
    "password/reset/": {"email": 254},
    "password/reset/confirm/": {
        "token": 256,
        "new_password": 1024,
        "new_password_confirm": 1024,
    },
    "email/change/confirm/": {"token": 256},
    "sessions/revoke/confirm/": {"token": 256},
    "mfa/authenticate/": {"mfa_token": 256, "code": 32},
    "mfa/authenticate/passkey/options/": {"mfa_token": 256},
    "mfa/authenticate/passkey/": {"mfa_token": 256, "credential": OBJECT},
    "passkeys/login/": {"challenge_id": 36, "credential": OBJECT},
}
SIGNED_IN: dict[str, dict[str, int]] = {
    "password/change/": {
        "current_password": 1024,
        "new_password": 1024,
        "new_password_confirm": 1024,
    },
    "email/change/": {"new_email": 254, "password": 1024},
    "account/delete/": {"password": 1024},
    "me/": {},  # GET only: any POST body is a 405
    "reauthenticate/": {"password": 1024},
    # The password is optional here: without it, 403 reauthentication_required.
    "sessions/revoke-others/": {"password": 1024},
    "sessions/": {},  # GET only
    "sessions/<str:session_id>/": {},  # DELETE only
    "mfa/": {},  # GET only
    # Optional password: without it, 403 reauthentication_required.
    "mfa/totp/setup/": {"password": 1024},
    "mfa/totp/confirm/": {"code": 16},
    "mfa/totp/": {},  # DELETE only
    "mfa/recovery-codes/": {"password": 1024},
    "passkeys/": {},  # GET only
    "passkeys/<str:passkey_id>/": {},  # PATCH and DELETE only
    "passkeys/register/options/": {"password": 1024},
    "passkeys/register/": {"credential": OBJECT, "name": 64},
}
# Endpoints whose password is optional: without it, 403 reauthentication_required.
OPTIONAL_PROOF = {
    "sessions/revoke-others/",
    "email/change/",
    "account/delete/",
    "mfa/totp/setup/",
    "mfa/recovery-codes/",
    "passkeys/register/options/",
}
# POST endpoints that read no body: whatever is sent, the answer is the same (the
# fuzzing account has no passkey to be asked for).
IGNORES_BODY = {
    "reauthenticate/email-code/": 200,
    "passkeys/login/options/": 200,
    "reauthenticate/passkey/options/": 404,
}
# Endpoints that take no body: a POST is a 405.
NO_BODY = {
    "me/",
    "sessions/",
    "sessions/<str:session_id>/",
    "mfa/",
    "mfa/totp/",
    "passkeys/",
    "passkeys/<str:passkey_id>/",
}
ENDPOINTS = {**PUBLIC, **SIGNED_IN}
OPTIONAL = {"first_name", "last_name", "name"}
EMAIL_FIELDS = {"email", "new_email"}

# Plausible values, so that the one spoiled field is what the answer is about.
PLAUSIBLE = {
    "email": "alice@example.com",
    "new_email": "alice.new@example.com",
    "code": "123456",
    "token": "o_2bScWRxNllcLwwGjWTy-jaAPpaAzXDQADggGcs498",
    "refresh": "e30.e30.e30",
    "challenge_id": "00000000-0000-0000-0000-000000000000",
    "credential": {"id": "AA", "rawId": "AA", "response": {}},
}

ROW_MODELS = (
    get_user_model(),
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
    AuthEvent,
)
WRITES = ("INSERT", "UPDATE", "DELETE")

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)  # any code point but surrogates, control characters too
    | st.sampled_from(["a@example.com", "A@EXAMPLE.COM", "x\r\n@example.com", ""])
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)
not_strings = values.filter(lambda value: not isinstance(value, str))


def spoiled(field: str, longest: int) -> st.SearchStrategy[Any]:
    """Values ``field`` must refuse: not a string, too long, or (an address) with a
    control character where trimming cannot remove it; for an ``OBJECT`` field,
    anything but an object."""
    if longest == OBJECT:
        return values.filter(lambda value: not isinstance(value, dict))
    bad = not_strings | st.text(max_size=8).map(lambda t: t + "x" * (longest + 1))
    if field in EMAIL_FIELDS:
        bad |= st.characters(categories=["Cc"]).map(lambda c: f"a{c}b@example.com")
    return bad


@st.composite
def invalid_object(draw: Any, fields: dict[str, int]) -> dict[str, Any]:
    """An object with every field but one drawn freely; that one is spoiled or
    left out. Unknown keys are added too (they are ignored, never an error)."""
    required = [name for name in fields if name not in OPTIONAL]
    body: dict[str, Any] = draw(st.dictionaries(st.text(max_size=10), values))
    for name in fields:
        if draw(st.booleans()):
            body[name] = draw(st.just(PLAUSIBLE.get(name, "x")) | values)
    broken = draw(st.sampled_from(required))
    if draw(st.booleans()):
        body.pop(broken, None)
    else:
        body[broken] = draw(spoiled(broken, fields[broken]))
    return body


def invalid_bodies(fields: dict[str, int]) -> st.SearchStrategy[Any]:
    top_level = not_strings.filter(lambda v: not isinstance(v, dict)) | st.text()
    if not fields:
        return values
    return top_level | invalid_object(fields)


invalid_utf8 = st.tuples(st.binary(max_size=200), st.binary(max_size=200)).map(
    lambda parts: parts[0] + b"\xff" + parts[1]  # 0xFF never occurs in UTF-8
)

FUZZ = hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def _no_rate_limits() -> Iterator[None]:
    with override_settings(RATELIMIT_ENABLE=False):
        yield


def client_for(path: str) -> APIClient:
    """A client; for a signed-in endpoint, one with a valid Bearer token."""
    client = APIClient()
    if path in SIGNED_IN or path in IGNORES_BODY:
        user_model = get_user_model()
        identity = EmailIdentity.objects.filter(email="fuzz@example.com").first()
        if identity is None:
            fields = {user_model.get_email_field_name(): "fuzz@example.com"}
            if user_model.USERNAME_FIELD not in fields:
                fields[user_model.USERNAME_FIELD] = "fuzz@example.com"
            user = user_model._default_manager.create_user(
                password="correct-Horse-battery-9", **fields
            )
            EmailIdentity.objects.create(
                user=user, email="fuzz@example.com", email_normalized="fuzz@example.com"
            )
        else:
            user = identity.user
        access = session_tokens(user)["access"]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def row_counts() -> dict[str, int]:
    return {model.__name__: model._default_manager.count() for model in ROW_MODELS}


@contextmanager
def nothing_written() -> Iterator[None]:
    """No row of the package's tables (or the user's) is added or removed, and no
    statement of the request writes anything."""
    before = row_counts()
    with CaptureQueriesContext(connection) as context:
        yield
    writes = [
        q["sql"]
        for q in context.captured_queries
        if q["sql"].lstrip().upper().startswith(WRITES)
    ]
    assert writes == []
    assert row_counts() == before


def assert_error_shape(response: Any) -> None:
    """A 4xx whose JSON body is ``{"detail": str, "code": str}`` (with the
    ``methods`` a proof may use, for ``reauthentication_required``) or field
    errors."""
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict) and body, body
    if body.get("code") == "reauthentication_required":
        assert set(body) == {"detail", "code", "methods"}, body
        assert body["methods"] and all(isinstance(m, str) for m in body["methods"])
        return
    if set(body) == {"detail", "code"} and isinstance(body["code"], str):
        assert isinstance(body["detail"], str) and body["detail"]
        assert body["code"]
        return
    for name, messages in body.items():
        assert isinstance(name, str)
        assert isinstance(messages, list) and messages, body
        assert all(isinstance(m, str) and m for m in messages), body


def test_every_endpoint_is_fuzzed() -> None:
    mounted = {
        str(pattern.pattern)
        for pattern in urls.urlpatterns
        if isinstance(pattern, URLPattern)
    }
    assert set(ENDPOINTS) | set(IGNORES_BODY) == mounted


@pytest.mark.parametrize("path", sorted(IGNORES_BODY))
@FUZZ
@given(raw=st.binary(max_size=300) | values.map(lambda v: json.dumps(v).encode()))
def test_a_body_where_none_is_read_is_ignored(path: str, raw: bytes) -> None:
    client = client_for(path)

    response = client.post(AUTH + path, raw, content_type="application/json")

    assert response.status_code == IGNORES_BODY[path], response.content


@pytest.mark.parametrize("path", list(ENDPOINTS))
@FUZZ
@given(data=st.data())
def test_any_invalid_json_is_a_4xx_and_writes_nothing(path: str, data: Any) -> None:
    client = client_for(path)
    body = data.draw(invalid_bodies(ENDPOINTS[path]), label="body")

    with nothing_written():
        response = client.post(
            AUTH + path, json.dumps(body), content_type="application/json"
        )

    assert_error_shape(response)
    # Signed in (never 401), so the body itself is what is refused.
    if path in NO_BODY:
        assert response.status_code == 405, body
    elif path in OPTIONAL_PROOF and response.status_code == 403:
        assert response.json()["code"] == "reauthentication_required", body
    else:
        assert response.status_code == 400, body


@pytest.mark.parametrize("path", list(ENDPOINTS))
@FUZZ
@given(
    raw=invalid_utf8,
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "text/plain", ""]
    ),
)
def test_bytes_that_are_not_utf8_are_a_4xx_and_write_nothing(
    path: str, raw: bytes, content_type: str
) -> None:
    client = client_for(path)

    with nothing_written():
        response = client.generic("POST", AUTH + path, raw, content_type=content_type)

    assert_error_shape(response)
    if path in NO_BODY:
        assert response.status_code == 405
    elif content_type.startswith("application/json"):
        assert response.json()["code"] == "parse_error"
    else:
        assert response.status_code == 415


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["token", "x"]), st.text(max_size=300)))
def test_any_verification_query_string_is_a_4xx(query: dict[str, str]) -> None:
    with nothing_written():
        response = APIClient().get(AUTH + "verify-email/", query)

    assert_error_shape(response)


@FUZZ
@given(
    header=st.text(max_size=200).filter(lambda h: h.isascii())
    | st.text(max_size=200).map(lambda t: "Bearer " + t).filter(str.isascii)
)
def test_any_authorization_header_at_me_is_a_4xx(header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    with nothing_written():
        response = client.get(AUTH + "me/")

    assert_error_shape(response)


def plausible_body(path: str) -> dict[str, Any]:
    return {
        name: PLAUSIBLE.get(name, "correct-Horse-battery-9") for name in ENDPOINTS[path]
    }


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_a_megabyte_body_is_413(path: str) -> None:
    client = client_for(path)
    body = {**plausible_body(path), "padding": "x" * (1024 * 1024)}

    with nothing_written():
        response = client.post(AUTH + path, body, format="json")

    assert_error_shape(response)
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


FORMS = [path for path in ENDPOINTS if path not in NO_BODY]


@pytest.mark.parametrize("kind", ["form", "multipart"])
@pytest.mark.parametrize("path", FORMS)
def test_form_and_multipart_bodies_are_415(path: str, kind: str) -> None:
    client = client_for(path)
    # A form holds strings: a passkey's answer is sent as its JSON text.
    body = {
        name: json.dumps(value) if isinstance(value, dict) else value
        for name, value in plausible_body(path).items()
    }

    with nothing_written():
        if kind == "form":
            response = client.post(
                AUTH + path,
                urlencode(body),
                content_type="application/x-www-form-urlencoded",
            )
        else:
            response = client.post(AUTH + path, body, format="multipart")

    assert_error_shape(response)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_are_405_with_a_code(method: str) -> None:
    response = getattr(APIClient(), method)(AUTH + "register/")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def nested(depth: int, kind: str) -> str:
    """JSON nested ``depth`` levels deep: objects or arrays."""
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth + "]" * depth


# 33 is one past the parser's MAX_DEPTH; 1 500 (3 KB) is past the recursion limit
# of Python 3.11 and 3.12, not of 3.13; 10 000 is past every version's.
DEPTHS = [33, 1_500, 10_000]


@pytest.mark.parametrize("kind", ["object", "array"])
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("path", FORMS)
def test_a_body_nested_deeper_than_the_recursion_limit_is_400(
    path: str, depth: int, kind: str
) -> None:
    client = client_for(path)

    with nothing_written():
        response = client.post(
            AUTH + path, nested(depth, kind), content_type="application/json"
        )

    assert_error_shape(response)
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize("path", FORMS)
def test_a_body_nested_as_deep_as_allowed_is_parsed(path: str) -> None:
    client = client_for(path)
    body = {"padding": json.loads(nested(31, "array"))}  # 32 levels with the object

    response = client.post(AUTH + path, body, format="json")

    assert_error_shape(response)
    # Parsed: refused as a form (400), or, with no password, for the proof (403).
    # email/change/ needs its new_email first: without it, a 400.
    proof_only = path in OPTIONAL_PROOF and path != "email/change/"
    assert response.status_code == (403 if proof_only else 400)
    assert "code" not in response.json() or response.json()["code"] != "parse_error"


def deep_jwt(part: str) -> str:
    """A token whose header or payload is JSON nested 1 000 levels deep."""
    import base64

    def b64(raw: str) -> str:
        return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()

    header, payload = '{"alg":"HS256","typ":"JWT"}', '{"token_type":"refresh"}'
    if part == "header":
        header = nested(1_000, "array")
    else:
        payload = nested(1_000, "array")
    return f"{b64(header)}.{b64(payload)}.c2ln"


@pytest.mark.parametrize("part", ["header", "payload"])
@pytest.mark.parametrize("path", ["token/refresh/", "logout/"])
def test_a_token_nesting_its_json_deeply_is_refused_not_a_500(
    path: str, part: str
) -> None:
    with nothing_written():
        response = APIClient().post(
            AUTH + path, {"refresh": deep_jwt(part)}, format="json"
        )

    assert_error_shape(response)


@pytest.mark.parametrize("part", ["header", "payload"])
def test_a_bearer_token_nesting_its_json_deeply_is_401(part: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {deep_jwt(part)}")

    with nothing_written():
        response = client.get(AUTH + "me/")

    assert_error_shape(response)
    assert response.status_code == 401
