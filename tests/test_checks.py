from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

FRONTEND = {"FRONTEND_URL": "https://app.example.com"}
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/1",
    }
}


def ids(**overrides: Any) -> set[str]:
    with override_settings(SILENCED_SYSTEM_CHECKS=[], **overrides):
        return {
            message.id
            for message in run_checks()
            if message.id and message.id.startswith("kinwise_auth.")
        }


def test_a_sound_configuration_passes() -> None:
    assert ids(KINWISE_AUTH=FRONTEND, CACHES=REDIS) == set()


def test_e001_unknown_key() -> None:
    assert "kinwise_auth.E001" in ids(
        KINWISE_AUTH={**FRONTEND, "FRONTEND_ULR": "x"}, CACHES=REDIS
    )


def test_e002_frontend_url_missing_outside_debug() -> None:
    assert "kinwise_auth.E002" in ids(KINWISE_AUTH={}, CACHES=REDIS)
    assert "kinwise_auth.E002" not in ids(KINWISE_AUTH={}, CACHES=REDIS, DEBUG=True)


def test_e003_frontend_url_not_http() -> None:
    assert "kinwise_auth.E003" in ids(
        KINWISE_AUTH={"FRONTEND_URL": "app.example.com"}, CACHES=REDIS
    )


def test_e004_rate_limits_not_a_dict() -> None:
    assert "kinwise_auth.E004" in ids(
        KINWISE_AUTH={**FRONTEND, "RATE_LIMITS": ["3/h"]}, CACHES=REDIS
    )


@pytest.mark.parametrize(
    "rates",
    [
        {"ip": "3 per hour"},
        {"ip": "3/y"},
        {"ip": "/h"},
        {"ip": 3},
        {"email": "x/10m"},
        {"device": "3/h"},
    ],
)
def test_e005_malformed_rate(rates: dict[str, Any]) -> None:
    limits = {"register": rates}
    assert "kinwise_auth.E005" in ids(
        KINWISE_AUTH={**FRONTEND, "RATE_LIMITS": limits}, CACHES=REDIS
    )


@pytest.mark.parametrize("rate", ["3/h", "5/10m", "100/d", "1/s", None])
def test_valid_rates_pass(rate: str | None) -> None:
    limits = {"register": {"ip": rate}}
    assert "kinwise_auth.E005" not in ids(
        KINWISE_AUTH={**FRONTEND, "RATE_LIMITS": limits}, CACHES=REDIS
    )


def test_e006_process_local_rate_limit_cache_outside_debug() -> None:
    assert "kinwise_auth.E006" in ids(KINWISE_AUTH=FRONTEND, CACHES=LOCMEM)
    assert "kinwise_auth.E006" not in ids(
        KINWISE_AUTH=FRONTEND, CACHES=LOCMEM, DEBUG=True
    )
    assert "kinwise_auth.E006" in ids(
        KINWISE_AUTH=FRONTEND,
        CACHES={
            **REDIS,
            "limits": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
        },
        RATELIMIT_USE_CACHE="limits",
    )


def test_e007_hook_cannot_be_imported() -> None:
    assert "kinwise_auth.E007" in ids(
        KINWISE_AUTH={**FRONTEND, "AUDIT_CALLABLE": "nowhere.to.be.found"},
        CACHES=REDIS,
    )


def test_w001_blacklist_app_missing(settings: Any) -> None:
    apps = [a for a in settings.INSTALLED_APPS if "token_blacklist" not in a]
    assert "kinwise_auth.W001" in ids(
        KINWISE_AUTH=FRONTEND, CACHES=REDIS, INSTALLED_APPS=apps
    )


def test_w002_email_timeout_unset_or_not_below_the_claim() -> None:
    sound = {"KINWISE_AUTH": FRONTEND, "CACHES": REDIS}
    assert "kinwise_auth.W002" not in ids(EMAIL_TIMEOUT=10, **sound)
    assert "kinwise_auth.W002" in ids(EMAIL_TIMEOUT=None, **sound)
    assert "kinwise_auth.W002" in ids(
        EMAIL_TIMEOUT=60,
        KINWISE_AUTH={**FRONTEND, "OUTBOX_CLAIM_TIMEOUT": 30},
        CACHES=REDIS,
    )


def test_e008_account_deletion_mode() -> None:
    assert "kinwise_auth.E008" in ids(
        KINWISE_AUTH={**FRONTEND, "ACCOUNT_DELETION": "purge"}, CACHES=REDIS
    )
    assert "kinwise_auth.E008" not in ids(
        KINWISE_AUTH={**FRONTEND, "ACCOUNT_DELETION": "deactivate"}, CACHES=REDIS
    )


@pytest.mark.parametrize("length", [0, 5, 17, 100, "6", 6.0, True, None])
def test_e009_login_code_length_out_of_bounds(length: Any) -> None:
    assert "kinwise_auth.E009" in ids(
        KINWISE_AUTH={**FRONTEND, "LOGIN_CODE_LENGTH": length}, CACHES=REDIS
    )


@pytest.mark.parametrize("length", [6, 8, 16])
def test_e009_login_code_length_within_bounds(length: int) -> None:
    assert "kinwise_auth.E009" not in ids(
        KINWISE_AUTH={**FRONTEND, "LOGIN_CODE_LENGTH": length}, CACHES=REDIS
    )


def test_the_longest_code_allowed_can_be_entered(api: Any, make_user: Any) -> None:
    """The check's upper bound is what otp/verify/ accepts: a code of that many
    digits passes validation (and is refused only as a wrong code)."""
    from kinwise_auth.checks import LOGIN_CODE_LENGTH_BOUNDS

    make_user("alice@example.com")
    longest = "1" * LOGIN_CODE_LENGTH_BOUNDS[1]

    too_long = api.post(
        "/api/v1/auth/otp/verify/",
        {"email": "alice@example.com", "code": longest + "1"},
        format="json",
    )
    accepted = api.post(
        "/api/v1/auth/otp/verify/",
        {"email": "alice@example.com", "code": longest},
        format="json",
    )

    assert too_long.status_code == 400
    assert list(too_long.json()) == ["code"]  # a field error, not a code check
    assert accepted.json()["code"] == "invalid_code"


def test_e010_the_tasks_publish_through_celerys_fallback_app() -> None:
    from celery import Celery

    from . import celery_app

    fallback = Celery("default", fixups=[], set_as_current=False)
    fallback.set_current()
    try:
        found = ids(KINWISE_AUTH=FRONTEND, CACHES=REDIS)
    finally:
        celery_app.app.set_current()

    assert "kinwise_auth.E010" in found
    assert "kinwise_auth.E010" not in ids(KINWISE_AUTH=FRONTEND, CACHES=REDIS)


@pytest.mark.parametrize(
    ("backends", "expected"),
    [
        (["django.contrib.auth.backends.ModelBackend"], True),
        ([], True),
        (["tests.checks_support.EmailBackendOfTheHost"], False),
        (
            [
                "django.contrib.auth.backends.ModelBackend",
                "kinwise_auth.backends.EmailBackend",
            ],
            False,
        ),
    ],
)
def test_e011_the_email_backend_is_missing(backends: list[str], expected: bool) -> None:
    found = ids(KINWISE_AUTH=FRONTEND, CACHES=REDIS, AUTHENTICATION_BACKENDS=backends)

    assert ("kinwise_auth.E011" in found) is expected


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ({}, False),
        ({"samesite": "Strict"}, False),
        ({"samesite": "None", "secure": True}, False),
        ({"samesite": "None", "secure": False}, True),
        ({"samesite": "lax"}, True),
        ({"samesite": None}, True),
        ({"name": ""}, True),
    ],
)
def test_e012_the_browser_cookie(cookie: dict[str, Any], expected: bool) -> None:
    found = ids(
        KINWISE_AUTH={**FRONTEND, "BROWSER_REFRESH_COOKIE": cookie}, CACHES=REDIS
    )

    assert ("kinwise_auth.E012" in found) is expected
