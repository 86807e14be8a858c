"""No client input yields a 500: random JSON values and raw bytes at every endpoint."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings(
        "ignore::hypothesis.errors.NonInteractiveExampleWarning"
    ),
]

ENDPOINTS = {
    "/api/v1/auth/register/": [
        "email",
        "password",
        "password_confirm",
        "first_name",
        "last_name",
    ],
    "/api/v1/auth/verify-email/": ["token"],
    "/api/v1/auth/resend-verification/": ["email"],
    "/api/v1/auth/otp/request/": ["email"],
    "/api/v1/auth/otp/verify/": ["email", "code"],
    "/api/v1/auth/login/": ["email", "password"],
    "/api/v1/auth/token/refresh/": ["refresh"],
    "/api/v1/auth/logout/": ["refresh"],
    "/api/v1/auth/password/reset/": ["email"],
    "/api/v1/auth/password/reset/confirm/": [
        "token",
        "new_password",
        "new_password_confirm",
    ],
    "/api/v1/auth/email/change/confirm/": ["token"],
}

SIGNED_IN_ENDPOINTS = {
    "/api/v1/auth/password/change/": [
        "current_password",
        "new_password",
        "new_password_confirm",
    ],
    "/api/v1/auth/email/change/": ["new_email", "password"],
    "/api/v1/auth/account/delete/": ["password"],
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
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

FUZZ = hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def bodies(fields: list[str]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(fields, values)) | values


@override_settings(RATELIMIT_ENABLE=False)
@pytest.mark.parametrize("url", list(ENDPOINTS))
@FUZZ
@given(data=st.data())
def test_any_json_value_is_answered_below_500(url: str, data: Any) -> None:
    body = data.draw(bodies(ENDPOINTS[url]))
    response = APIClient().post(url, json.dumps(body), content_type="application/json")

    assert response.status_code < 500, (body, response.content)
    payload = response.json()
    if response.status_code >= 400 and "detail" in payload:
        assert isinstance(payload.get("code"), str)


@override_settings(RATELIMIT_ENABLE=False)
@pytest.mark.parametrize("url", list(ENDPOINTS))
@FUZZ
@given(
    raw=st.binary(max_size=400),
    content_type=st.sampled_from(
        ["application/json", "application/json; charset=latin-1", "text/plain", ""]
    ),
)
def test_any_bytes_are_answered_below_500(
    url: str, raw: bytes, content_type: str
) -> None:
    response = APIClient().generic("POST", url, raw, content_type=content_type)

    assert response.status_code < 500, (raw, response.content)


@override_settings(RATELIMIT_ENABLE=False)
@FUZZ
@given(query=st.dictionaries(st.sampled_from(["token", "x"]), st.text(max_size=300)))
def test_any_query_string_is_answered_below_500(query: dict[str, str]) -> None:
    response = APIClient().get("/api/v1/auth/verify-email/", query)

    assert response.status_code < 500, (query, response.content)


@override_settings(RATELIMIT_ENABLE=False)
@pytest.mark.parametrize("url", list(SIGNED_IN_ENDPOINTS))
@FUZZ
@given(data=st.data())
def test_signed_in_endpoints_answer_any_json_below_500(
    url: str, data: Any, make_user: Any
) -> None:
    from rest_framework_simplejwt.tokens import RefreshToken

    from kinwise_auth.models import EmailIdentity

    identity = EmailIdentity.objects.filter(email="fuzz@example.com").first()
    user = identity.user if identity else make_user("fuzz@example.com")
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}"
    )
    body = data.draw(bodies(SIGNED_IN_ENDPOINTS[url]))

    response = client.post(url, json.dumps(body), content_type="application/json")

    assert response.status_code < 500, (body, response.content)


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_are_405_with_a_code(method: str) -> None:
    response = getattr(APIClient(), method)("/api/v1/auth/register/")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
