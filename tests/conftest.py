from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from kinwise_auth.models import EmailIdentity
from kinwise_auth.normalization import normalize_email

from . import celery_app  # noqa: F401  (binds the shared tasks to an eager app)

PASSWORD = "correct-Horse-battery-9"


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    # Rate-limit counters live in the cache; each test starts with a clean budget.
    cache.clear()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    """Create a user with its identity: ``verified`` (active) by default."""

    def make(
        email: str = "alice@example.com",
        *,
        password: str = PASSWORD,
        verified: bool = True,
        active: bool | None = None,
    ) -> Any:
        user_model = get_user_model()
        fields: dict[str, Any] = {user_model.get_email_field_name(): email}
        if user_model.get_email_field_name() != user_model.USERNAME_FIELD:
            fields[user_model.USERNAME_FIELD] = email
        user = user_model._default_manager.create_user(
            password=password,
            is_active=verified if active is None else active,
            **fields,
        )
        EmailIdentity.objects.create(
            user=user,
            email=email,
            email_normalized=normalize_email(email),
            verified_at=timezone.now() if verified else None,
        )
        return user

    return make


def register_body(email: str = "new@example.com", **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        **extra,
    }
