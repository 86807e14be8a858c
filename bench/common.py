"""What the in-process benchmarks share: Django set up on a throwaway database,
accounts made without a real hasher, and codes and link tokens minted as the
delivery task mints them (only their keyed hash stored), so every timed request
gets fresh, valid input.

Import it after :func:`bootstrap` has run (each bench calls it first).
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-Horse-battery-9"
OTHER_PASSWORD = "other-Horse-battery-7"
FAST_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"
DEFAULT_HASHER = "django.contrib.auth.hashers.PBKDF2PasswordHasher"
_SERIAL = itertools.count(1)


def bootstrap(db_name: str) -> None:
    """Set up Django with the tests' settings on PostgreSQL database ``db_name``.

    Emails are published to an in-memory broker (nothing delivers them, as in a
    web process) and rate limits are off.
    """
    # `python bench/http.py` puts bench/ first on sys.path, where http.py would
    # shadow the standard library's http package (and requests.py `requests`).
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("KINWISE_TEST_DB", "postgres")
    os.environ.setdefault("KINWISE_TEST_DB_NAME", db_name)
    os.environ["KINWISE_TEST_BROKER_URL"] = "memory://"
    os.environ.pop("KINWISE_TEST_SMTP_PORT", None)

    import django

    django.setup()

    from django.conf import settings

    import tests.celery_app  # noqa: F401  (binds the shared tasks to its app)

    settings.RATELIMIT_ENABLE = False


def use_hasher(hasher: str) -> None:
    """Hash every password with ``hasher`` from now on."""
    from django.conf import settings
    from django.contrib.auth.hashers import get_hashers, get_hashers_by_algorithm

    settings.PASSWORD_HASHERS = [hasher]
    get_hashers.cache_clear()
    get_hashers_by_algorithm.cache_clear()


@contextmanager
def throwaway_database() -> Iterator[None]:
    """Create the test database (migrated) and drop it afterwards."""
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False)
    try:
        yield
    finally:
        from django.db import connections

        for conn in connections.all():
            conn.close()
        teardown_databases(old, verbosity=0)
        teardown_test_environment()


class Accounts:
    """Accounts, codes and links made directly in the database (untimed setup)."""

    def __init__(self) -> None:
        from django.contrib.auth.hashers import make_password

        # One hash per password, reused: setup must not pay a slow hasher per user.
        self.hashes = {p: make_password(p) for p in (PASSWORD, OTHER_PASSWORD)}

    def email(self, prefix: str) -> str:
        """A fresh address."""
        return f"{prefix}{next(_SERIAL)}@bench.example"

    def user(self, email: str, *, verified: bool = True) -> Any:
        """A user with its identity: verified and active, or pending."""
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from kinwise_auth.models import EmailIdentity

        model = get_user_model()
        fields: dict[str, Any] = {model.get_email_field_name(): email}
        if model.USERNAME_FIELD != model.get_email_field_name():
            fields[model.USERNAME_FIELD] = email
        user = model._default_manager.create(
            password=self.hashes[PASSWORD], is_active=verified, **fields
        )
        EmailIdentity.objects.create(
            user=user,
            email=email,
            email_normalized=email,
            verified_at=timezone.now() if verified else None,
        )
        return user

    def code(self, user: Any) -> str:
        """A live login code for ``user`` (older ones superseded), as the task mints."""
        from django.utils import timezone

        from kinwise_auth import crypto
        from kinwise_auth.models import LoginCode

        code = crypto.new_login_code(6)
        LoginCode.objects.filter(user=user).supersede()
        LoginCode.objects.create(
            user=user,
            code_hash=crypto.keyed_hash(crypto.login_code_message(user.pk, code)),
            expires_at=timezone.now() + timedelta(minutes=10),
        )
        return code

    def link(self, user: Any, purpose: str, email: str = "") -> str:
        """A live link token of ``purpose`` for ``user``, as the task mints."""
        from django.utils import timezone

        from kinwise_auth import crypto
        from kinwise_auth.models import LinkToken

        token = crypto.new_link_token()
        LinkToken.objects.filter(user=user, purpose=purpose).supersede()
        LinkToken.objects.create(
            user=user,
            purpose=purpose,
            token_hash=crypto.keyed_hash(token),
            email=email,
            expires_at=timezone.now() + timedelta(hours=24),
        )
        return token

    def access(self, user: Any) -> str:
        """A Bearer header value for ``user``."""
        from rest_framework_simplejwt.tokens import RefreshToken

        return f"Bearer {RefreshToken.for_user(user).access_token}"

    def refresh(self, user: Any) -> str:
        """A fresh refresh token for ``user``."""
        from rest_framework_simplejwt.tokens import RefreshToken

        return str(RefreshToken.for_user(user))


def median_ms(samples: list[float]) -> float:
    """The median of ``samples`` (seconds) in milliseconds."""
    return statistics.median(samples) * 1e3


def percentile_ms(samples: list[float], pct: int) -> float:
    """The ``pct``-th percentile of ``samples`` (seconds) in milliseconds."""
    if len(samples) < 2:
        return samples[0] * 1e3 if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[pct - 1] * 1e3
