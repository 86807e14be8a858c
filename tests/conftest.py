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


def session_tokens(user: Any) -> dict[str, str]:
    """A pair of ``user`` as a sign-in answers it: with its session, so the
    refresh rotates and the access token is accepted."""
    from kinwise_auth.services import RequestMeta
    from kinwise_auth.services.sessions import open_session

    return open_session(user, method="password", meta=RequestMeta())


def register_body(email: str = "new@example.com", **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        **extra,
    }


class Broker(list):  # type: ignore[type-arg]
    """Task messages published to the in-memory broker, in order."""

    def drain(self) -> None:
        """Run every published delivery task, in order, in this process."""
        from kinwise_auth import tasks

        while self:
            args = self.pop(0)["body"][0]
            tasks.deliver.apply(args=args, throw=True)


@pytest.fixture
def broker() -> Any:
    """Publish to kombu's in-memory broker instead of running tasks eagerly.

    Yields the published messages (headers and body), so a test can count
    publishes, read exactly what crossed the broker, and run them with ``drain()``.
    """
    from celery.signals import before_task_publish

    published = Broker()

    def capture(body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        published.append({"body": body, "headers": headers})

    before_task_publish.connect(capture, weak=False, dispatch_uid="tests.broker")
    celery_app.app.conf.task_always_eager = False
    try:
        yield published
    finally:
        before_task_publish.disconnect(dispatch_uid="tests.broker")
        celery_app.app.conf.task_always_eager = True


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@pytest.fixture
def assert_queries() -> Callable[[int], Any]:
    """Like ``django_assert_num_queries``, counting data queries only.

    SQLite logs ``BEGIN``/``COMMIT`` and PostgreSQL does not; the budget is about
    the work, so transaction control is left out on both.
    """
    from contextlib import contextmanager

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    @contextmanager
    def check(expected: int) -> Any:
        with CaptureQueriesContext(connection) as context:
            yield context
        data = [
            q["sql"]
            for q in context.captured_queries
            if not q["sql"].lstrip().upper().startswith(TRANSACTION_CONTROL)
        ]
        assert len(data) == expected, "\n".join([f"{len(data)} queries:", *data])

    return check
