from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory, override_settings

from kinwise_auth import ratelimit
from kinwise_auth.errors import RateLimited, ServiceUnavailable
from kinwise_auth.models import AuthEvent

from .conftest import PASSWORD, register_body


def request_from(remote: str, forwarded: str | None = None) -> Any:
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().post("/", **extra)


def test_remote_addr_unless_proxies_are_trusted() -> None:
    assert ratelimit.client_ip(request_from("10.0.0.1", "1.2.3.4")) == "10.0.0.1"


@override_settings(KINWISE_AUTH={"TRUSTED_PROXY_COUNT": 1})
@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        # A client may prepend anything; only the entry our proxy appended counts.
        ("6.6.6.6, 203.0.113.9", "203.0.113.9"),
        ("", "10.0.0.1"),
        ("not-an-ip", "10.0.0.1"),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_trusted_proxy_count(forwarded: str, expected: str) -> None:
    assert ratelimit.client_ip(request_from("10.0.0.1", forwarded)) == expected


@override_settings(KINWISE_AUTH={"TRUSTED_PROXY_COUNT": 2})
def test_two_proxies() -> None:
    request = request_from("10.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.2")
    assert ratelimit.client_ip(request) == "203.0.113.9"


@pytest.mark.django_db(transaction=True)
@override_settings(
    KINWISE_AUTH={"FRONTEND_URL": "https://app.example.com", "TRUSTED_PROXY_COUNT": 1}
)
def test_garbage_forwarded_for_and_user_agent_are_stored_safely(api: Any) -> None:
    response = api.post(
        "/api/v1/auth/register/",
        register_body(),
        format="json",
        HTTP_X_FORWARDED_FOR="<script>",
        HTTP_USER_AGENT="agent\x00\r\nX-Evil: 1",
    )

    assert response.status_code == 201
    event = AuthEvent.objects.get(event_type="user_registered")
    assert event.ip == "127.0.0.1"
    assert event.user_agent == "agentX-Evil: 1"


class BrokenCache:
    def add(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("cache is down")

    incr = get = add


@pytest.fixture
def broken_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import django_ratelimit.core

    monkeypatch.setattr(django_ratelimit.core, "caches", {"default": BrokenCache()})


def test_a_failing_cache_fails_open_by_default(
    broken_cache: None, caplog: pytest.LogCaptureFixture
) -> None:
    ratelimit.limit(request_from("10.0.0.1"), "register", "ip", "10.0.0.1")

    assert "rate-limit cache failed (ConnectionError)" in caplog.text


@override_settings(KINWISE_AUTH={"RATE_LIMIT_FAIL_OPEN": False})
def test_a_failing_cache_can_fail_closed(broken_cache: None) -> None:
    with pytest.raises(ServiceUnavailable):
        ratelimit.limit(request_from("10.0.0.1"), "register", "ip", "10.0.0.1")


@pytest.mark.django_db(transaction=True)
@override_settings(
    KINWISE_AUTH={
        "FRONTEND_URL": "https://app.example.com",
        "RATE_LIMIT_FAIL_OPEN": False,
    }
)
def test_fail_closed_answers_503(api: Any, broken_cache: None) -> None:
    response = api.post("/api/v1/auth/register/", register_body(), format="json")

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


def test_over_the_limit_raises_with_the_time_left() -> None:
    request = request_from("10.0.0.1")
    with override_settings(KINWISE_AUTH={"RATE_LIMITS": {"register": {"ip": "1/h"}}}):
        ratelimit.limit(request, "register", "ip", "10.0.0.1")
        with pytest.raises(RateLimited) as raised:
            ratelimit.limit(request, "register", "ip", "10.0.0.1")
    assert 0 < raised.value.retry_after <= 3600


def test_a_scope_without_a_rate_is_unlimited() -> None:
    request = request_from("10.0.0.1")
    for _ in range(50):
        ratelimit.limit(request, "verify_email", "email", "x")


def resolve_from_header(request: Any) -> str:
    return str(request.META.get("HTTP_X_REAL_IP", ""))


@override_settings(
    KINWISE_AUTH={"CLIENT_IP_RESOLVER": f"{__name__}.resolve_from_header"}
)
def test_a_resolver_callable_decides_the_client_ip() -> None:
    request = RequestFactory().post(
        "/", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="198.51.100.4"
    )

    assert ratelimit.client_ip(request) == "198.51.100.4"


@pytest.mark.django_db(transaction=True)
@override_settings(
    KINWISE_AUTH={
        "FRONTEND_URL": "https://app.example.com",
        "CLIENT_IP_RESOLVER": f"{__name__}.resolve_from_header",
    }
)
def test_a_resolver_returning_junk_still_limits_and_stores_no_ip(api: Any) -> None:
    for n in range(3):
        api.post(
            "/api/v1/auth/register/",
            register_body(f"u{n}@example.com"),
            format="json",
            HTTP_X_REAL_IP="not an ip",
        )
    response = api.post(
        "/api/v1/auth/register/",
        register_body("u9@example.com"),
        format="json",
        HTTP_X_REAL_IP="not an ip",
    )

    assert response.status_code == 429
    assert set(AuthEvent.objects.values_list("ip", flat=True)) == {None}


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        # An IPv4-mapped IPv6 address is its IPv4 client, not a /64 of its own.
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("not-an-ip", "not-an-ip"),  # a CLIENT_IP_RESOLVER's own key, as it is
    ],
)
def test_ip_key(ip: str, key: str) -> None:
    assert ratelimit.ip_key(ip) == key


@pytest.mark.django_db(transaction=True)
def test_a_cache_that_failed_is_not_waited_for_again_in_the_request(
    api: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import django_ratelimit.core

    from kinwise_auth.services import session_state

    calls: list[str] = []

    class Down:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                raise ConnectionError("cache is down")  # after its timeout, in life

            return fail

    monkeypatch.setattr(django_ratelimit.core, "caches", {"default": Down()})
    monkeypatch.setattr(session_state, "_cache", Down)
    make_user("a@example.com")

    signed_in = api.post(
        "/api/v1/auth/login/",
        {"email": "a@example.com", "password": PASSWORD},
        format="json",
    )

    assert signed_in.status_code == 200
    # The per-IP limit met the failure; the email budget, the session's "live"
    # mark and nothing else waited on the cache again.
    assert len(calls) == 1, calls
    calls.clear()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {signed_in.json()['access']}")
    assert api.get("/api/v1/auth/me/").status_code == 200  # the database answers
    assert len(calls) == 1, calls
