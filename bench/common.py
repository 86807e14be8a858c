"""What the benchmarks share: Django set up on a throwaway database, and the one
account helper (:class:`Accounts`): accounts made without paying a hasher per
user, and codes and link tokens minted by the package's services, as the
delivery task mints them, so every timed request gets fresh, valid input. The
endpoints themselves are catalogued in :mod:`bench.endpoints`.

Import it after :func:`bootstrap` has run (each bench calls it first).
"""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.seeding import user_columns  # noqa: E402

PASSWORD = "correct-Horse-battery-9"
OTHER_PASSWORD = "other-Horse-battery-7"
FAST_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"
DEFAULT_HASHER = "django.contrib.auth.hashers.PBKDF2PasswordHasher"
_SERIAL = itertools.count(1)


def bootstrap(db_name: str, broker: str = "memory://") -> None:
    """Set up Django with the tests' settings on PostgreSQL database ``db_name``.

    Emails are published to ``broker``: by default an in-memory one that nothing
    consumes, as a web process sees it. Rate limits are off.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("KINWISE_TEST_DB", "postgres")
    os.environ.setdefault("KINWISE_TEST_DB_NAME", db_name)
    os.environ["KINWISE_TEST_BROKER_URL"] = broker
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
    """The one account helper of the benches: accounts made directly in the
    database, and the secrets a request needs, minted by the package's own
    services as the delivery task mints them (untimed setup)."""

    def __init__(self) -> None:
        from django.contrib.auth.hashers import make_password

        # One hash, with the current hasher, reused: setup must not pay a slow
        # hasher per user.
        self.hash = make_password(PASSWORD)
        # Current passwords, by user pk, of accounts a request changed them on.
        self.passwords: dict[Any, str] = {}
        self._standing: dict[str, Any] = {}

    def email(self, prefix: str) -> str:
        """A fresh address."""
        return f"{prefix}{next(_SERIAL)}@bench.example"

    @staticmethod
    def address(user: Any) -> str:
        """``user``'s address."""
        return str(getattr(user, user.get_email_field_name()))

    def _fields(self, email: str, verified: bool) -> dict[str, Any]:
        from django.contrib.auth import get_user_model

        model = get_user_model()
        fields: dict[str, Any] = {model.get_email_field_name(): email}
        if model.get_email_field_name() != model.USERNAME_FIELD:
            fields[model.USERNAME_FIELD] = email
        return {"password": self.hash, "is_active": verified, **fields}

    def _identities(self, users: list[Any], verified: bool) -> None:
        from django.utils import timezone

        from kinwise_auth.models import EmailIdentity

        now = timezone.now() if verified else None
        EmailIdentity.objects.bulk_create(
            EmailIdentity(
                user=u,
                email=self.address(u),
                email_normalized=self.address(u),
                verified_at=now,
            )
            for u in users
        )

    def user(self, email: str, *, verified: bool = True) -> Any:
        """A user with its identity: verified and active, or pending."""
        from django.contrib.auth import get_user_model

        user = get_user_model()._default_manager.create(**self._fields(email, verified))
        self._identities([user], verified)
        return user

    def users(self, n: int, *, verified: bool = True, prefix: str = "u") -> list[Any]:
        """``n`` users with their identities, made in bulk (two INSERTs)."""
        from django.contrib.auth import get_user_model

        model = get_user_model()
        made = model._default_manager.bulk_create(
            model(**self._fields(self.email(prefix), verified)) for _ in range(n)
        )
        self._identities(made, verified)
        return made

    def standing(self, role: str, *, verified: bool = True) -> Any:
        """The account kept for ``role`` (made on first use) that requests share."""
        if role not in self._standing:
            self._standing[role] = self.user(self.email(role), verified=verified)
        return self._standing[role]

    def password(self, user: Any) -> str:
        """``user``'s current password (PASSWORD unless a request changed it)."""
        return self.passwords.get(getattr(user, "pk", None), PASSWORD)

    def code(self, user: Any) -> str:
        """A live login code for ``user`` (older ones superseded)."""
        from kinwise_auth.services.secrets import mint_login_code

        return mint_login_code(user=user)

    def link(self, user: Any, purpose: str, email: str = "") -> str:
        """A live link token of ``purpose`` for ``user`` (older ones of that
        purpose superseded); ``email`` is the address an email-change link proves."""
        from kinwise_auth.services.secrets import mint_link

        return mint_link(user=user, purpose=purpose, email=email)

    def access(self, user: Any) -> str:
        """A Bearer header value for ``user``, of a session of its own."""
        return f"Bearer {self._session(user)['access']}"

    def refresh(self, user: Any) -> str:
        """A fresh refresh token for ``user``, of a session of its own."""
        return self._session(user)["refresh"]

    @staticmethod
    def _session(user: Any) -> dict[str, str]:
        from kinwise_auth.services import RequestMeta
        from kinwise_auth.services.sessions import open_session

        return open_session(user, method="password", meta=RequestMeta())


def median_ms(samples: list[float]) -> float:
    """The median of ``samples`` (seconds) in milliseconds."""
    return statistics.median(samples) * 1e3


def percentile_ms(samples: list[float], pct: int) -> float:
    """The ``pct``-th percentile of ``samples`` (seconds) in milliseconds."""
    if len(samples) < 2:
        return samples[0] * 1e3 if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[pct - 1] * 1e3


def seed(users: int, rows: int, expired: int, prefix: str = "seed") -> dict[str, float]:
    """Seed ``users`` verified accounts with identities and ``rows`` rows each of
    login codes, link tokens and audit events, in SQL; VACUUM ANALYZE; return
    seconds per table.

    Codes and tokens are old (used or superseded), as a busy site leaves them;
    ``expired`` of them (half codes, half tokens) are past their expiry, for the
    purge; audit events lie within the retention. Accounts are
    ``{prefix}{n}@seed.example``, n from 1 to ``users``. Foreign keys are not checked
    while loading (``session_replication_role``): the rows are consistent by
    construction.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from kinwise_auth.models import AuthEvent, EmailIdentity, LinkToken, LoginCode

    user_table = get_user_model()._meta.db_table
    columns, values = user_columns(
        f"'{prefix}' || g || '@seed.example'", make_password(PASSWORD)
    )
    lo = "(SELECT min(id) FROM {t} WHERE {c} LIKE '{p}%@seed.example')"
    email_col = (
        get_user_model()._meta.get_field(get_user_model().get_email_field_name()).column
    )
    first = lo.format(t=user_table, c=email_col, p=prefix)
    half = expired // 2
    user_of = f"(m.lo + (g % {users}))"
    statements = {
        user_table: (
            f"INSERT INTO {user_table} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM generate_series(1, {users}) g"
        ),
        EmailIdentity._meta.db_table: (
            f"INSERT INTO {EmailIdentity._meta.db_table} "
            "(user_id, email, email_normalized, verified_at, created_at) "
            f"SELECT id, {email_col}, {email_col}, now(), now() FROM {user_table} "
            f"WHERE {email_col} LIKE '{prefix}%@seed.example'"
        ),
        LoginCode._meta.db_table: (
            f"INSERT INTO {LoginCode._meta.db_table} (user_id, code_hash, created_at, "
            "expires_at, attempts, used_at, superseded_at) "
            f"SELECT {user_of}, md5('{prefix}c' || g) || md5('{prefix}C' || g), "
            "now() - (g % 1440) * interval '1 minute', "
            f"CASE WHEN g <= {half} THEN now() - interval '1 day' "
            "ELSE now() + interval '1 day' END, "
            "g % 3, CASE WHEN g % 2 = 0 THEN now() END, "
            "CASE WHEN g % 2 = 1 THEN now() END "
            f"FROM generate_series(1, {rows}) g, ({first}) m(lo)"
        ),
        LinkToken._meta.db_table: (
            f"INSERT INTO {LinkToken._meta.db_table} (user_id, purpose, token_hash, "
            "email, created_at, expires_at, used_at, superseded_at) "
            f"SELECT {user_of}, (ARRAY['verify_email', 'password_reset', "
            "'email_change'])[1 + g % 3], "
            f"md5('{prefix}t' || g) || md5('{prefix}T' || g), '', "
            "now() - (g % 1440) * interval '1 minute', "
            f"CASE WHEN g <= {expired - half} THEN now() - interval '1 day' "
            "ELSE now() + interval '1 day' END, "
            "CASE WHEN g % 2 = 0 THEN now() END, CASE WHEN g % 2 = 1 THEN now() END "
            f"FROM generate_series(1, {rows}) g, ({first}) m(lo)"
        ),
        AuthEvent._meta.db_table: (
            f"INSERT INTO {AuthEvent._meta.db_table} (event_type, user_id, user_agent, "
            "extra, created_at) "
            f"SELECT (ARRAY['login_succeeded', 'login_failed', "
            f"'login_code_requested'])[1 + g % 3], {user_of}, '', '{{}}', "
            "now() - (g % 200) * interval '1 day' "
            f"FROM generate_series(1, {rows}) g, ({first}) m(lo)"
        ),
    }
    took: dict[str, float] = {}
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET synchronous_commit = off")
        for table, sql in statements.items():
            started = time.perf_counter()
            cursor.execute(sql)
            # As a table in service looks: visibility map and hint bits set,
            # statistics current (and no autovacuum left to run beside the timing).
            cursor.execute(f"VACUUM ANALYZE {table}")
            took[table] = time.perf_counter() - started
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("SET synchronous_commit = on")
        # Write the load's dirty pages out now, not during the timing after it.
        cursor.execute("CHECKPOINT")
    return took


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpSink:
    """A local SMTP server (aiosmtpd, in a thread) that accepts every message,
    after ``delay`` seconds each, and records when each arrived."""

    def __init__(self, delay: float = 0.0) -> None:
        import asyncio

        from aiosmtpd.controller import Controller

        self.delay = delay
        self.arrivals: list[float] = []
        sink = self

        class Handler:
            async def handle_DATA(
                self, server: Any, session: Any, envelope: Any
            ) -> str:
                if sink.delay:
                    await asyncio.sleep(sink.delay)
                sink.arrivals.append(time.perf_counter())
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def spawn(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> Any:
    """Start ``command`` in a process group of its own, its output appended to
    ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: Any) -> None:
    """SIGTERM the process group of a :func:`spawn`ed process, SIGKILL if it
    lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
