from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings

from kinwise_auth.conf import DEFAULTS, auth_settings
from kinwise_auth.serializers import UserPayloadSerializer


def test_defaults_apply() -> None:
    assert auth_settings.PREVENT_ENUMERATION is True
    assert timedelta(hours=24) == auth_settings.EMAIL_VERIFICATION_LIFETIME
    assert auth_settings.rate("register", "ip") == "3/h"
    assert auth_settings.rate("register", "email") == "3/h"
    assert auth_settings.MAX_BODY_SIZE == 64 * 1024


def test_overrides_are_re_read() -> None:
    with override_settings(KINWISE_AUTH={"SITE_NAME": "Acme"}):
        assert auth_settings.SITE_NAME == "Acme"
    assert DEFAULTS["SITE_NAME"] == auth_settings.SITE_NAME


def test_one_scope_overrides_without_restating_the_others() -> None:
    with override_settings(KINWISE_AUTH={"RATE_LIMITS": {"register": {"ip": "10/m"}}}):
        assert auth_settings.rate("register", "ip") == "10/m"
        assert auth_settings.rate("register", "email") == "3/h"
        assert auth_settings.rate("resend_verification", "ip") == "3/10m"


def test_durations_accept_seconds() -> None:
    with override_settings(KINWISE_AUTH={"EMAIL_VERIFICATION_LIFETIME": 90}):
        assert timedelta(seconds=90) == auth_settings.EMAIL_VERIFICATION_LIFETIME


def test_hooks_are_imported() -> None:
    assert auth_settings.USER_SERIALIZER is UserPayloadSerializer


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        auth_settings.NOPE  # noqa: B018


@pytest.mark.parametrize(
    ("email_timeout", "claim", "expected"),
    [
        (10, None, timedelta(seconds=45)),  # 3 x EMAIL_TIMEOUT + 15 s
        (None, None, timedelta(minutes=5)),  # a send may hang: the old default
        (10, 120, timedelta(minutes=2)),  # set: taken as is
    ],
)
def test_the_claim_follows_the_smtp_timeout(
    settings: Any, email_timeout: int | None, claim: int | None, expected: timedelta
) -> None:
    settings.EMAIL_TIMEOUT = email_timeout
    settings.KINWISE_AUTH = {"OUTBOX_CLAIM_TIMEOUT": claim}

    assert auth_settings.claim_timeout() == expected
    # The task is stopped before its claim can pass to another worker.
    assert 0 < auth_settings.delivery_time_limit() < expected.total_seconds()
