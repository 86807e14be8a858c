"""Fixtures for the integration suite: real PostgreSQL, Redis, Celery and SMTP.

Nothing is mocked: requests go over HTTP to pytest-django's live server, tasks go
through the broker to a ``celery worker`` subprocess, and that worker sends mail
over SMTP to an aiosmtpd server running in this process. Run it as its own
invocation, with the environment that points ``tests/settings.py`` at the services::

    KINWISE_TEST_DB=postgres KINWISE_TEST_DB_NAME=kinwise_integration \\
    KINWISE_TEST_BROKER_URL=redis://127.0.0.1:6379/14 \\
    KINWISE_TEST_CACHE_URL=redis://127.0.0.1:6379/15 \\
    pytest -m integration tests/integration

A missing service or variable skips the suite with the reason, or fails it when
``CI`` is set (:func:`tests.support.gate.unavailable`), so CI cannot pass by
skipping. The helpers the tests share are in :mod:`tests.support`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery.signals import before_task_publish
from django.conf import settings

from tests.celery_app import app as celery_app
from tests.support.brokers import is_redis_url, private_redis, redis_client
from tests.support.gate import unavailable
from tests.support.smtp import SMTPServer, running_smtp
from tests.support.workers import (
    Worker,
    Workers,
    fault_workers,
    start_worker,
    subprocess_env,
)

SERVICE_TIMEOUT = 3.0  # seconds to reach PostgreSQL, Redis or the broker
WORKER_LOG_KEY = pytest.StashKey[Path]()


def _configuration_problems() -> list[str]:
    """What keeps this process from being an integration run, with the fix."""
    problems: list[str] = []
    missing = [
        name
        for name in (
            "KINWISE_TEST_DB",
            "KINWISE_TEST_BROKER_URL",
            "KINWISE_TEST_CACHE_URL",
        )
        if not os.environ.get(name)
    ]
    engine = str(settings.DATABASES["default"]["ENGINE"])
    if "postgresql" not in engine:
        problems.append(
            f"the database is {engine}, not PostgreSQL "
            "(set KINWISE_TEST_DB=postgres and KINWISE_TEST_DB_NAME)"
        )
    if celery_app.conf.task_always_eager:
        problems.append(
            "Celery runs eagerly (set KINWISE_TEST_BROKER_URL, "
            "e.g. redis://127.0.0.1:6379/14)"
        )
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        problems.append(
            "the cache is not Redis (set KINWISE_TEST_CACHE_URL, "
            "e.g. redis://127.0.0.1:6379/15)"
        )
    if problems and missing:
        problems.append(f"missing environment variables: {', '.join(missing)}")
    return problems


def _check_postgres() -> None:
    db: dict[str, Any] = settings.DATABASES["default"]
    with psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=int(db.get("PORT") or 5432),
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        connect_timeout=int(SERVICE_TIMEOUT),
    ) as conn:
        conn.execute("SELECT 1")


def _check_redis(url: str) -> None:
    client = redis_client(url, SERVICE_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()


def _check_broker(url: str) -> None:
    if is_redis_url(url):
        _check_redis(url)
        return
    with celery_app.connection_for_write(connect_timeout=SERVICE_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=int(SERVICE_TIMEOUT))


@pytest.fixture(scope="session")
def integration_services() -> None:
    """The gate: this run is configured for integration and every service answers."""
    problems = _configuration_problems()
    if problems:
        unavailable("integration suite", "; ".join(problems))
    checks: list[tuple[str, Callable[[], None]]] = [
        ("PostgreSQL", _check_postgres),
        ("the broker", lambda: _check_broker(str(celery_app.conf.broker_url))),
        (
            "the Redis cache",
            lambda: _check_redis(str(settings.CACHES["default"]["LOCATION"])),
        ),
    ]
    for name, check in checks:
        try:
            check()
        except Exception as exc:  # any failure to connect means "unreachable"
            unavailable(
                "integration suite",
                f"{name} is unreachable: {type(exc).__name__}: {exc}",
            )


@pytest.fixture(scope="session")
def django_db_setup(integration_services: None, django_db_setup: None) -> None:
    """pytest-django's test database, created only once the gate has passed."""


# --- SMTP ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_server(integration_services: None) -> Iterator[SMTPServer]:
    """An aiosmtpd server on a spare loopback port, in this process."""
    with running_smtp() as server:
        yield server


@pytest.fixture
def mailbox(smtp_server: SMTPServer) -> Iterator[SMTPServer]:
    """The SMTP server, with no message received, at the start of each test."""
    smtp_server.clear()
    yield smtp_server
    smtp_server.clear()


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """An SMTP server of the test's own, whose faults the test switches on."""
    with running_smtp() as server:
        yield server


# --- the live server -----------------------------------------------------------


@pytest.fixture
def api(live_server: Any) -> str:
    """The API's root on pytest-django's live server, for requests over real HTTP."""
    return f"{live_server.url}/api/v1/auth"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` at DEBUG for ``kinwise_auth`` and ``django``: a test that looks
    for a secret in the logs reads everything they say."""
    caplog.set_level(logging.DEBUG, logger="kinwise_auth")
    caplog.set_level(logging.DEBUG, logger="django")
    return caplog


# --- Celery -------------------------------------------------------------------


def _purge_broker() -> None:
    """Drop messages left by an earlier run (queued, or unacked in Redis)."""
    url = str(celery_app.conf.broker_url)
    with celery_app.connection_for_write(connect_timeout=SERVICE_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=int(SERVICE_TIMEOUT))
        celery_app.control.purge(connection=conn)
    if is_redis_url(url):
        client = redis_client(url, SERVICE_TIMEOUT)
        try:
            client.delete("unacked", "unacked_index", "unacked_mutex")
        finally:
            client.close()


@pytest.fixture(scope="session")
def celery_worker(
    request: pytest.FixtureRequest,
    django_db_setup: None,
    smtp_server: SMTPServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """A real worker on the test database, sending to :func:`smtp_server`.

    It outlives the tests but not the test database: pytest tears it down before
    ``django_db_setup``, which then drops the database.
    """
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    request.config.stash[WORKER_LOG_KEY] = log_path
    env = subprocess_env(
        broker_url=str(celery_app.conf.broker_url), smtp_port=smtp_server.port
    )
    _purge_broker()
    with start_worker(
        env, log_path=log_path, nodename=f"kinwise-it-{os.getpid()}@localhost"
    ) as worker:
        yield worker


@pytest.fixture
def workers(transactional_db: None, tmp_path: Path) -> Iterator[Workers]:
    """Prefork workers the test starts, and may kill, on the fault broker, which
    this process publishes to meanwhile; every one is killed at the end."""
    with fault_workers(tmp_path) as started:
        yield started


@pytest.fixture(scope="module")
def unconsumed_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private broker no worker consumes, one per test module: the emails its
    tests' requests queue are never delivered (a worker of another test, still
    running, would otherwise deliver them while the database is flushed)."""
    with private_redis(tmp_path_factory.mktemp("unconsumed-broker")) as broker:
        yield broker.url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the worker's log to the report of a failed integration test."""
    report = yield
    log_path = item.config.stash.get(WORKER_LOG_KEY, None)
    if report.failed and log_path is not None and log_path.exists():
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        report.sections.append(("celery worker log", "\n".join(lines[-200:])))
    return report


@dataclass(frozen=True)
class PublishedTask:
    """A task message as this process handed it to the broker."""

    name: str
    body: Any
    headers: dict[str, Any]

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self.body[0])  # protocol 2: (args, kwargs, embed)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.body[1])


@pytest.fixture
def published() -> Iterator[list[PublishedTask]]:
    """Every task message this process publishes during the test (any thread)."""
    captured: list[PublishedTask] = []
    lock = threading.Lock()

    def record(
        sender: str | None = None,
        body: Any = None,
        headers: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        with lock:
            captured.append(
                PublishedTask(name=str(sender), body=body, headers=dict(headers or {}))
            )

    before_task_publish.connect(record, weak=False)
    try:
        yield captured
    finally:
        before_task_publish.disconnect(record)


@pytest.fixture
def broker_dump() -> Callable[[], bytes]:
    """Everything the Redis broker database holds, as bytes (empty for AMQP)."""
    url = str(celery_app.conf.broker_url)

    def dump() -> bytes:
        if not is_redis_url(url):
            return b""
        client = redis_client(url, SERVICE_TIMEOUT)
        chunks: list[Any] = []
        try:
            for key in client.scan_iter():
                kind = client.type(key)
                chunks.append(key)
                if kind == b"string":
                    chunks.append(client.get(key) or b"")
                elif kind == b"list":
                    chunks.extend(client.lrange(key, 0, -1))
                elif kind == b"hash":
                    for k, v in client.hgetall(key).items():
                        chunks += [k, v]
                elif kind == b"set":
                    chunks.extend(client.smembers(key))
                elif kind == b"zset":
                    chunks.extend(client.zrange(key, 0, -1))
        finally:
            client.close()
        return b"\n".join(
            c if isinstance(c, bytes) else str(c).encode() for c in chunks
        )

    return dump
