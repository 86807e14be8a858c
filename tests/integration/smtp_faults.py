"""Fault injection for the SMTP fault and worker fault tests.

* :class:`FaultySMTP`: an aiosmtpd server on a spare loopback port, in this process,
  whose behaviour the test switches at runtime: ``accept``, ``refuse`` (a 4xx
  answer to ``RCPT`` or ``DATA``), ``slow`` (an async sleep before answering
  ``DATA``) or ``drop`` (the connection closed at ``RCPT`` or ``DATA``). It records
  every SMTP transaction it sees, so a test can count delivery attempts, and keeps
  only the messages it answered ``250`` to.
* :class:`FaultWorkers`: ``celery worker`` subprocesses the test starts and kills
  itself (SIGKILL to the whole process group: main process and prefork pool), on a
  broker database of their own, with the package's timeouts shortened through
  ``KINWISE_TEST_AUTH`` and ``KINWISE_TEST_VISIBILITY_TIMEOUT``. While it is open,
  this process (the live server's threads, the admin) publishes to that broker too.
* :func:`run_redrive`: the ``kinwise_auth_redrive`` management command, run in a
  subprocess with the same environment as the workers.

Never the shared services: the SMTP server is this process's, and the broker is one
``redis-server`` of their own (:func:`fault_broker_url`) that nothing else uses.
"""

from __future__ import annotations

import asyncio
import atexit
import email
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
import redis
from aiosmtpd.controller import Controller
from django.db import connection

from kinwise_auth.models import OutboxEmail
from tests.celery_app import app as celery_app

from .conftest import ReceivedEmail
from .fault_tools import RedisServer, free_port, run_command, worker_command

REPO_ROOT = Path(__file__).resolve().parents[2]
_fault_broker: RedisServer | None = None


def fault_broker_url() -> str:
    """A private ``redis-server`` for these tests' broker, purged before and after
    each test; started on first use, stopped when the test process exits."""
    global _fault_broker
    if _fault_broker is None:
        log_dir = Path(tempfile.mkdtemp(prefix="kinwise-fault-broker-"))
        server = RedisServer(port=free_port(), log_path=log_dir / "redis.log")
        server.start()
        atexit.register(server.stop)
        _fault_broker = server
    return _fault_broker.url


REDIS_TIMEOUT = 5.0
WORKER_READY_TIMEOUT = 30.0
WORKER_STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0  # a management command subprocess
HTTP_TIMEOUT = 10.0
SETTLE_TIMEOUT = 20.0  # for every outbox row to be final and the broker empty
HANG_CAP = 60.0  # "slow" never sleeps longer; "drop" waits at most this to be cut

Mode = Literal["accept", "refuse", "slow", "drop"]
Stage = Literal["RCPT", "DATA"]
T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    check: Callable[[], None] | None = None,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``.

    ``check`` runs on every poll (e.g. to fail fast when a worker died);
    ``details`` adds what the failure message should show.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if check is not None:
            check()
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            pytest.fail(f"not within {timeout:.0f}s: {what}{extra}")
        time.sleep(interval)


# --- SMTP -----------------------------------------------------------------------


@dataclass(frozen=True)
class SMTPEvent:
    """One step of one SMTP transaction, as the server answered it."""

    at: float  # time.monotonic()
    stage: Stage
    recipients: tuple[str, ...]
    outcome: str  # "accepted", "refused 451", "dropped", "delaying", "aborted"


@dataclass(frozen=True)
class Behaviour:
    mode: Mode = "accept"
    stage: Stage = "DATA"
    code: int = 451
    delay: float = 0.0


@dataclass
class FaultyHandler:
    """The aiosmtpd handler; every method is safe to call from any thread."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    events: list[SMTPEvent] = field(default_factory=list)
    received: list[ReceivedEmail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, stage: Stage, recipients: Any, outcome: str) -> None:
        event = SMTPEvent(time.monotonic(), stage, tuple(recipients), outcome)
        with self.lock:
            self.events.append(event)

    def _now(self) -> Behaviour:
        with self.lock:
            return self.behaviour

    async def _drop(self, server: Any, stage: Stage, recipients: Any) -> str:
        self._record(stage, recipients, "dropped")
        server.transport.close()
        # connection_lost() cancels this coroutine: no answer is ever sent.
        await asyncio.sleep(HANG_CAP)
        return "421 4.4.2 connection dropped"

    async def handle_RCPT(  # noqa: N802
        self,
        server: Any,
        session: Any,
        envelope: Any,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        now = self._now()
        if now.stage == "RCPT" and now.mode == "refuse":
            self._record("RCPT", [address], f"refused {now.code}")
            return f"{now.code} 4.3.0 Injected fault: try again later"
        if now.stage == "RCPT" and now.mode == "drop":
            return await self._drop(server, "RCPT", [address])
        envelope.rcpt_tos.append(address)
        self._record("RCPT", [address], "accepted")
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        now = self._now()
        recipients = list(envelope.rcpt_tos)
        if now.stage == "DATA" and now.mode == "refuse":
            self._record("DATA", recipients, f"refused {now.code}")
            return f"{now.code} 4.3.0 Injected fault: try again later"
        if now.stage == "DATA" and now.mode == "drop":
            return await self._drop(server, "DATA", recipients)
        if now.mode == "slow":
            self._record("DATA", recipients, "delaying")
            try:
                await asyncio.sleep(min(now.delay, HANG_CAP))
            except asyncio.CancelledError:
                # The client went away before the answer: nothing is delivered.
                self._record("DATA", recipients, "aborted")
                raise
            transport = server.transport
            if transport is None or transport.is_closing():
                self._record("DATA", recipients, "aborted")
                return "451 4.4.2 client gone"
        raw = bytes(envelope.content)
        message = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        item = ReceivedEmail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(recipients),
            raw=raw,
            message=message,
        )
        with self.lock:
            self.received.append(item)
        self._record("DATA", recipients, "accepted")
        return "250 Message accepted for delivery"


class FaultySMTP:
    """A running :class:`FaultyHandler` behind an aiosmtpd ``Controller``."""

    def __init__(self, handler: FaultyHandler, controller: Controller) -> None:
        self.handler = handler
        self.controller = controller

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def set(
        self,
        mode: Mode,
        *,
        stage: Stage = "DATA",
        code: int = 451,
        delay: float = 0.0,
    ) -> None:
        """Switch the behaviour for every step answered from now on."""
        with self.handler.lock:
            self.handler.behaviour = Behaviour(mode, stage, code, delay)

    def events(self, recipient: str | None = None) -> list[SMTPEvent]:
        with self.handler.lock:
            items = list(self.handler.events)
        return [e for e in items if recipient is None or recipient in e.recipients]

    def attempts(self, recipient: str) -> int:
        """SMTP transactions that got as far as naming ``recipient`` (RCPT)."""
        return sum(1 for e in self.events(recipient) if e.stage == "RCPT")

    def messages(self, recipient: str | None = None) -> list[ReceivedEmail]:
        """Messages the server answered 250 to (delivered), in order."""
        with self.handler.lock:
            items = list(self.handler.received)
        return [m for m in items if recipient is None or recipient in m.rcpt_tos]

    def describe(self) -> str:
        events = self.events()
        t0 = events[0].at if events else 0.0
        lines = [
            f"  +{e.at - t0:6.2f}s {e.stage} {','.join(e.recipients)}: {e.outcome}"
            for e in events
        ]
        return "SMTP events:\n" + ("\n".join(lines) or "  (none)")

    def wait_for(
        self,
        recipient: str,
        subject: str,
        *,
        timeout: float,
        check: Callable[[], None] | None = None,
        details: Callable[[], str] | None = None,
    ) -> ReceivedEmail:
        def found() -> ReceivedEmail | None:
            for item in self.messages(recipient):
                if item.subject == subject:
                    return item
            return None

        def explain() -> str:
            parts = [self.describe()]
            if details is not None:
                parts.append(details())
            return "\n".join(parts)

        return wait_until(
            found,
            timeout=timeout,
            what=f"an email {subject!r} to {recipient}",
            check=check,
            details=explain,
        )


@contextmanager
def running_smtp() -> Iterator[FaultySMTP]:
    """A :class:`FaultySMTP` on a spare loopback port, stopped on exit."""
    handler = FaultyHandler()
    last_error: OSError | None = None
    for _ in range(3):  # the spare port may be taken between probe and bind
        controller = Controller(
            handler, hostname="127.0.0.1", port=free_port(), ready_timeout=5.0
        )
        try:
            controller.start()
        except OSError as exc:
            last_error = exc
            continue
        try:
            yield FaultySMTP(handler, controller)
        finally:
            controller.stop()
        return
    raise RuntimeError(f"no spare port for the SMTP server: {last_error}")


# --- HTTP -----------------------------------------------------------------------

# Straight to the live server, whatever proxy the environment configures.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    """POST ``payload`` as JSON over real HTTP; the status and the parsed body."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Accept": "application/json", "Content-Type": "application/json"},
        method="POST",
    )

    def parse(raw: bytes) -> Any:
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return raw.decode("utf-8", errors="replace")  # e.g. Django's 500 page

    try:
        with _opener.open(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, parse(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, parse(exc.read())


# --- the broker -----------------------------------------------------------------


def broker_client() -> redis.Redis:
    return redis.Redis.from_url(
        fault_broker_url(),
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
    )


def purge_fault_broker() -> None:
    """Delete every key of the fault broker's database (and of no other)."""
    client = broker_client()
    try:
        keys = list(client.scan_iter(count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def unacked() -> dict[str, float]:
    """Messages delivered to a worker and not acknowledged: tag -> delivery time."""
    client = broker_client()
    try:
        # Any: redis-py's reply types are unions of sync and async answers.
        pairs: Any = client.zrange("unacked_index", 0, -1, withscores=True)
        return {bytes(tag).decode(): float(score) for tag, score in pairs}
    finally:
        client.close()


def broker_backlog() -> int:
    """Messages queued, or delivered and not acknowledged, on the fault broker."""
    client = broker_client()
    try:
        return int(client.llen("celery")) + int(client.hlen("unacked"))
    finally:
        client.close()


def wait_until_settled(
    check: Callable[[], None] | None = None,
    details: Callable[[], str] | None = None,
) -> None:
    """Every outbox row final and nothing left on the fault broker: what a test
    asserts then is the state at rest, not a task half done (or a retry due)."""
    final = (
        OutboxEmail.Status.SENT,
        OutboxEmail.Status.SKIPPED,
        OutboxEmail.Status.FAILED,
    )

    def settled() -> bool:
        busy = OutboxEmail.objects.exclude(status__in=final).exists()
        return not busy and broker_backlog() == 0

    def explain() -> str:
        rows = list(OutboxEmail.objects.values_list("pk", "kind", "status"))
        text = f"outbox rows: {rows}; broker backlog: {broker_backlog()}"
        return text + (f"\n{details()}" if details is not None else "")

    wait_until(
        settled,
        timeout=SETTLE_TIMEOUT,
        what="the outbox and the broker at rest",
        interval=0.1,
        check=check,
        details=explain,
    )


# --- workers --------------------------------------------------------------------


def _group_members(pgid: int) -> list[tuple[int, str]]:
    """``(pid, state)`` of every process in group ``pgid``, zombies excepted."""
    members: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append((int(entry.name), state))
    return members


@dataclass
class FaultWorker:
    """A ``celery worker`` subprocess (prefork, one child) in its own group."""

    process: subprocess.Popen[bytes]
    log_path: Path
    nodename: str

    @property
    def pgid(self) -> int:
        return self.process.pid  # start_new_session: the leader's pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        text = "\n".join(self.log().splitlines()[-lines:])
        return f"--- worker {self.nodename} log ({self.log_path}) ---\n{text}"

    def assert_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"worker {self.nodename} exited with {code}\n{self.log_tail()}")

    def processes(self) -> list[tuple[int, str]]:
        """The live (non-zombie) processes of its group: main and pool."""
        return _group_members(self.pgid)

    def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT) -> None:
        """Until it logs ``<nodename> ready.``: consuming, its pool forked."""
        wait_until(
            lambda: f"{self.nodename} ready." in self.log(),
            timeout=timeout,
            what=f"worker {self.nodename} ready",
            interval=0.1,
            check=self.assert_alive,
            details=self.log_tail,
        )

    def kill(self) -> None:
        """SIGKILL the whole group (main process and pool), then reap the main."""
        with suppress(ProcessLookupError):  # already gone, all of it
            os.killpg(self.pgid, signal.SIGKILL)
        self.process.wait(timeout=WORKER_STOP_TIMEOUT)
        # The pool child is reparented and reaped by init: wait till it is gone.
        wait_until(
            lambda: not self.processes(),
            timeout=WORKER_STOP_TIMEOUT,
            what=f"every process of worker {self.nodename} gone after SIGKILL",
            details=lambda: f"left: {self.processes()}",
        )


@dataclass
class FaultWorkers:
    """Starts :class:`FaultWorker` processes; :meth:`close` kills what is left."""

    log_dir: Path
    started: list[FaultWorker] = field(default_factory=list)

    def env(
        self,
        smtp_port: int,
        auth: dict[str, Any],
        visibility_timeout: int | None = None,
    ) -> dict[str, str]:
        """The environment of a worker (or command) on the test database."""
        env = {
            **os.environ,
            # pytest-django exports the run's settings module (--ds, ini or env).
            "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
            "KINWISE_TEST_DB": "postgres",
            # tests/settings.py uses it as NAME: the worker opens the test database.
            "KINWISE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "KINWISE_TEST_BROKER_URL": fault_broker_url(),
            "KINWISE_TEST_SMTP_PORT": str(smtp_port),
            "KINWISE_TEST_AUTH": json.dumps(auth),
            "PYTHONUNBUFFERED": "1",  # the log file is read while it runs
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        env.pop("KINWISE_TEST_VISIBILITY_TIMEOUT", None)
        if visibility_timeout is not None:
            env["KINWISE_TEST_VISIBILITY_TIMEOUT"] = str(visibility_timeout)
        return env

    def start(
        self,
        smtp_port: int,
        auth: dict[str, Any],
        *,
        visibility_timeout: int | None = None,
        ready: bool = True,
    ) -> FaultWorker:
        nodename = f"kinwise-fault-{uuid.uuid4().hex[:10]}@localhost"
        log_path = self.log_dir / f"{nodename.split('@')[0]}.log"
        # prefork: the test kills the pool process as well as the main one.
        command = worker_command(nodename, pool="prefork")
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self.env(smtp_port, auth, visibility_timeout),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
            )
        worker = FaultWorker(process=process, log_path=log_path, nodename=nodename)
        self.started.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    def logs(self) -> str:
        return "\n".join(w.log_tail() for w in self.started)

    def close(self) -> None:
        errors: list[BaseException] = []
        for worker in self.started:
            try:
                if worker.process.poll() is None or worker.processes():
                    worker.kill()
            except BaseException as exc:  # keep killing the others
                errors.append(exc)
        if errors:
            raise errors[0]


@contextmanager
def fault_workers(log_dir: Path) -> Iterator[FaultWorkers]:
    """Workers on :func:`fault_broker_url`, which this process publishes to meanwhile.

    The broker database is purged before and after; every worker is killed on exit.
    """
    purge_fault_broker()
    previous = celery_app.conf.broker_url
    celery_app.conf["broker_url"] = fault_broker_url()
    workers = FaultWorkers(log_dir=log_dir)
    try:
        yield workers
    finally:
        celery_app.conf["broker_url"] = previous
        try:
            workers.close()
        finally:
            purge_fault_broker()


def run_redrive(env: dict[str, str]) -> str:
    """The ``kinwise_auth_redrive`` management command, in a subprocess that loads
    the tests' Celery app as a project's ``__init__.py`` would (without it the
    command publishes through Celery's fallback app: system check E010); its
    output."""
    result = run_command(env, "kinwise_auth_redrive")
    return (result.stdout + result.stderr).strip()
