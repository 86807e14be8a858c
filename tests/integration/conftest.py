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
``CI`` is "true", so CI cannot pass by skipping.
"""

from __future__ import annotations

import email
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from aiosmtpd.controller import Controller
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection

from tests.celery_app import app as celery_app

from .fault_tools import Worker, worker_command

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_TIMEOUT = 3.0  # seconds to reach PostgreSQL, Redis or the broker
WORKER_READY_TIMEOUT = 30.0  # a worker that is not consuming by then is broken
EMAIL_TIMEOUT = 20.0  # how long a test waits for an email to reach SMTP
WORKER_LOG_KEY = pytest.StashKey[Path]()


def _unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail when ``CI`` is "true"."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"integration suite cannot run: {reason}", pytrace=False)
    pytest.skip(f"integration suite cannot run: {reason}")


def _is_redis_url(url: str) -> bool:
    return urlsplit(url).scheme in {"redis", "rediss"}


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
    client = redis.Redis.from_url(
        url, socket_connect_timeout=SERVICE_TIMEOUT, socket_timeout=SERVICE_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()


def _check_broker(url: str) -> None:
    if _is_redis_url(url):
        _check_redis(url)
        return
    with celery_app.connection_for_write(connect_timeout=SERVICE_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=int(SERVICE_TIMEOUT))


@pytest.fixture(scope="session")
def integration_services() -> None:
    """The gate: this run is configured for integration and every service answers."""
    problems = _configuration_problems()
    if problems:
        _unavailable("; ".join(problems))
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
            _unavailable(f"{name} is unreachable: {type(exc).__name__}: {exc}")


@pytest.fixture(scope="session")
def django_db_setup(integration_services: None, django_db_setup: None) -> None:
    """pytest-django's test database, created only once the gate has passed."""


# --- SMTP ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedEmail:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        """The text of the ``text/<subtype>`` body part; fails if there is none."""
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part in {self.subject!r}"
        assert body.get_content_type() == f"text/{subtype}"
        return str(body.get_content())


@dataclass
class Mailbox:
    """The aiosmtpd handler: keeps every message, readable from any thread."""

    received: list[ReceivedEmail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = bytes(envelope.content)
        message = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        item = ReceivedEmail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            message=message,
        )
        with self.lock:
            self.received.append(item)
        return "250 Message accepted for delivery"

    def messages(self, recipient: str | None = None) -> list[ReceivedEmail]:
        with self.lock:
            items = list(self.received)
        if recipient is None:
            return items
        return [m for m in items if recipient in m.rcpt_tos]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    def wait_for(
        self,
        recipient: str,
        subject: str,
        *,
        timeout: float = EMAIL_TIMEOUT,
        check: Callable[[], None] | None = None,
    ) -> ReceivedEmail:
        """The first message to ``recipient`` with ``subject``, within ``timeout``.

        ``check`` runs on every poll (e.g. to fail fast when the worker died).
        """
        deadline = time.monotonic() + timeout
        while True:
            for item in self.messages(recipient):
                if item.subject == subject:
                    return item
            if check is not None:
                check()
            if time.monotonic() > deadline:
                seen = [(m.rcpt_tos, m.subject) for m in self.messages()]
                pytest.fail(
                    f"no email {subject!r} to {recipient} within {timeout:.0f}s; "
                    f"the SMTP server received {seen}"
                )
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SMTPServer:
    port: int
    mailbox: Mailbox


@pytest.fixture(scope="session")
def smtp_server(integration_services: None) -> Iterator[SMTPServer]:
    """An aiosmtpd server on a spare loopback port, in this process."""
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=_free_port(), ready_timeout=5.0
    )
    controller.start()
    try:
        yield SMTPServer(port=int(controller.port), mailbox=mailbox)
    finally:
        controller.stop()


@pytest.fixture
def mailbox(smtp_server: SMTPServer) -> Iterator[Mailbox]:
    """The SMTP server's mailbox, empty at the start of each test."""
    smtp_server.mailbox.clear()
    yield smtp_server.mailbox
    smtp_server.mailbox.clear()


# --- Celery -------------------------------------------------------------------


def _purge_broker() -> None:
    """Drop messages left by an earlier run (queued, or unacked in Redis)."""
    url = str(celery_app.conf.broker_url)
    with celery_app.connection_for_write(connect_timeout=SERVICE_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=int(SERVICE_TIMEOUT))
        celery_app.control.purge(connection=conn)
    if _is_redis_url(url):
        client = redis.Redis.from_url(url, socket_timeout=SERVICE_TIMEOUT)
        try:
            client.delete("unacked", "unacked_index", "unacked_mutex")
        finally:
            client.close()


def _wait_until_ready(worker: Worker) -> None:
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while time.monotonic() < deadline:
        worker.assert_alive()
        replies = (
            celery_app.control.ping(destination=[worker.nodename], timeout=0.5) or []
        )
        if any(worker.nodename in reply for reply in replies):
            return
    pytest.fail(
        f"the celery worker did not answer a ping within {WORKER_READY_TIMEOUT:.0f}s "
        "(its log is in the report's 'celery worker log' section)"
    )


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
    nodename = f"kinwise-it-{os.getpid()}@localhost"
    env = {
        **os.environ,
        # pytest-django exports the run's settings module (--ds, ini or env).
        "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
        "KINWISE_TEST_DB": "postgres",
        # tests/settings.py uses this as NAME: the worker opens the test database.
        "KINWISE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "KINWISE_TEST_BROKER_URL": str(celery_app.conf.broker_url),
        "KINWISE_TEST_SMTP_PORT": str(smtp_server.port),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    command = worker_command(nodename)
    _purge_broker()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    worker = Worker(process=process, log_path=log_path, nodename=nodename)
    try:
        _wait_until_ready(worker)
        yield worker
    finally:
        worker.stop()


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
        if not _is_redis_url(url):
            return b""
        client = redis.Redis.from_url(url, socket_timeout=SERVICE_TIMEOUT)
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
