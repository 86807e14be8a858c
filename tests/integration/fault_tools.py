"""Helpers for fault-injection tests: private services the test starts and breaks.

Nothing here touches the shared services. A test starts its own ``redis-server``
on a spare loopback port and stops, kills or pauses it; a hung broker is a socket
that listens and never answers; a ``celery worker`` or a management command runs
in a subprocess pointed at whichever broker the test chose, on the test database.
Every wait is bounded and every process started here is stopped by the context
manager that started it, also when the test fails.

Shared by the fault tests of ``tests/integration`` (broker, cache, RabbitMQ; SMTP
and worker-kill tests may use the worker helpers too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

REPO_ROOT = Path(__file__).resolve().parents[2]
HTTP_TIMEOUT = 15.0  # a hang shows as a timing failure, not a stuck run
REDIS_READY_TIMEOUT = 10.0
PROCESS_STOP_TIMEOUT = 10.0
WORKER_READY_TIMEOUT = 30.0
COMMAND_TIMEOUT = 60.0


def free_port() -> int:
    """A loopback TCP port nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``process``'s group (SIGCONT first, in case it was paused), then
    SIGKILL if it lingers. ``process`` was started with ``start_new_session``."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process``'s whole group and reap it (bounded)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait(timeout=PROCESS_STOP_TIMEOUT)


# --- a private redis-server ---------------------------------------------------


@dataclass
class RedisServer:
    """A ``redis-server`` of this test's own, on ``port``; start, stop, pause it."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    state: str = "not started"  # running, stopped, killed or paused

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )

    def ping(self) -> bool:
        client = self.client(timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"redis-server on {self.port} is already running")
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + REDIS_READY_TIMEOUT
        while not self.ping():
            if self.process.poll() is not None:
                pytest.fail(
                    f"redis-server on port {self.port} exited with "
                    f"{self.process.returncode}: {self.log()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} never answered PING")
            time.sleep(0.05)
        self.state = "running"

    def stop(self) -> None:
        """Shut it down (SIGTERM, SIGKILL if it lingers); the port then refuses."""
        if self.process is not None:
            _stop_group(self.process, PROCESS_STOP_TIMEOUT)
            self.state = "stopped"

    def kill(self) -> None:
        if self.process is not None:
            kill_group(self.process)
            self.state = "killed"

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing ever answers."""
        assert self.process is not None and self.process.poll() is None
        os.killpg(self.process.pid, signal.SIGSTOP)
        self.state = "paused"

    def resume(self) -> None:
        assert self.process is not None and self.process.poll() is None
        os.killpg(self.process.pid, signal.SIGCONT)
        self.state = "running"

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def private_redis(log_dir: Path, *, started: bool = True) -> Iterator[RedisServer]:
    """A private ``redis-server`` on a spare port, stopped on exit whatever happens."""
    port = free_port()
    server = RedisServer(port=port, log_path=log_dir / f"redis-{port}.log")
    try:
        if started:
            server.start()
        yield server
    finally:
        server.stop()


def broker_drained(server: RedisServer, queue: str = "celery") -> bool:
    """No task message waits in ``server`` (queued, or delivered but not acked).

    Celery's Redis transport keeps a queue as lists (one per priority step, named
    after the queue) and unacknowledged messages in the ``unacked`` hash; with late
    acks a message leaves that hash only once its task ran.
    """
    client = server.client()
    try:
        if client.hlen("unacked"):
            return False
        for key in client.scan_iter(match=f"{queue}*"):
            if client.type(key) in (b"list", "list") and client.llen(key):
                return False
        return True
    finally:
        client.close()


# --- a broker that accepts connections and never answers ------------------------


@contextmanager
def hung_listener() -> Iterator[int]:
    """A port whose listener never accepts or reads: connects hang on the first reply.

    The kernel completes the TCP handshake for the backlog, so a client connects,
    writes its command and then waits for an answer that never comes.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# --- Django and Celery subprocesses -------------------------------------------


def subprocess_env(
    *,
    db_name: str,
    broker_url: str,
    smtp_port: int | None = None,
    auth: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a Django process on the test database and ``broker_url``.

    ``db_name`` is the test database's actual name (``connection.settings_dict``);
    ``auth`` becomes ``KINWISE_TEST_AUTH`` (merged into ``KINWISE_AUTH``, durations
    in seconds).
    """
    env = {
        **os.environ,
        # pytest-django exports the run's settings module (--ds, ini or env).
        "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
        "KINWISE_TEST_DB": "postgres",
        "KINWISE_TEST_DB_NAME": db_name,
        "KINWISE_TEST_BROKER_URL": broker_url,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    if smtp_port is not None:
        env["KINWISE_TEST_SMTP_PORT"] = str(smtp_port)
    if auth is not None:
        env["KINWISE_TEST_AUTH"] = json.dumps(dict(auth))
    env.update(extra or {})
    return env


def worker_command(
    nodename: str, *, pool: str = "solo", concurrency: int = 1, queue: str = "celery"
) -> list[str]:
    """``celery -A tests.celery_app worker`` on ``queue``, named ``nodename``, quiet
    between workers (no gossip, mingle or heartbeat), logging each task."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.celery_app",
        "worker",
        "-l",
        "info",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        queue,
        "-n",
        nodename,
    ]


@dataclass
class Worker:
    """A ``celery worker`` subprocess and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    nodename: str

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def assert_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(
                f"celery worker {self.nodename} exited with {code}; its log:\n"
                + self.log()[-4000:]
            )

    def stop(self) -> None:
        """A warm shutdown of the whole process group; SIGKILL if it lingers."""
        _stop_group(self.process, PROCESS_STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL the main process and its pool (the whole group)."""
        kill_group(self.process)


@dataclass
class WorkerProcess(Worker):
    """A ``celery worker`` subprocess on a broker of the test's choosing."""

    broker_url: str
    queue: str

    def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT) -> None:
        """Until the worker answers a ping over its own broker (bounded).

        The ping goes through a Celery app of its own on the worker's broker: the
        tests' app stays pointed where the test put it.
        """
        pinger = Celery(
            "kinwise-fault-ping", broker=self.broker_url, set_as_current=False
        )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.assert_alive()
                try:
                    replies = (
                        pinger.control.ping(destination=[self.nodename], timeout=0.5)
                        or []
                    )
                except Exception:  # the broker side is not ready yet: ask again
                    replies = []
                    time.sleep(0.2)
                if any(self.nodename in reply for reply in replies):
                    return
        finally:
            pinger.close()
        pytest.fail(
            f"celery worker {self.nodename} did not answer a ping within "
            f"{timeout:.0f}s; its log:\n" + self.log()[-4000:]
        )


@contextmanager
def celery_worker_process(
    env: Mapping[str, str],
    *,
    log_path: Path,
    queue: str = "celery",
    pool: str = "solo",
    concurrency: int = 1,
    nodename: str | None = None,
    ready: bool = True,
) -> Iterator[WorkerProcess]:
    """Run ``celery -A tests.celery_app worker`` with ``env``; stopped on exit.

    ``env`` comes from :func:`subprocess_env` (its broker is the worker's).
    """
    node = nodename or f"kinwise-fault-{os.getpid()}-{free_port()}@localhost"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            worker_command(node, pool=pool, concurrency=concurrency, queue=queue),
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(
        process=process,
        log_path=log_path,
        nodename=node,
        broker_url=env["KINWISE_TEST_BROKER_URL"],
        queue=queue,
    )
    try:
        if ready:
            worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@contextmanager
def celery_beat_process(
    env: Mapping[str, str], *, log_path: Path, schedule_dir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``celery -A tests.celery_app beat`` with ``env``; stopped on exit.

    Its schedule file lives in ``schedule_dir``; ``env`` sets what it schedules.
    """
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.celery_app",
        "beat",
        "-l",
        "info",
        "--schedule",
        str(schedule_dir / "beat-schedule"),
        "--pidfile=",
    ]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        _stop_group(process, PROCESS_STOP_TIMEOUT)


# A Django management command, the way a host's manage.py runs it: the host's
# Celery app is imported at start-up (here tests.celery_app; a host does it in its
# project package), so kinwise_auth's shared tasks publish through it. Without the
# import they would bind to Celery's default app and its default broker (amqp on
# localhost: the shared RabbitMQ). With KINWISE_FAULT_BARRIER (a directory) the
# process sets up Django, connects to the database, says "ready-<pid>" there and
# waits for "go" (see :func:`release_barrier`), so several processes run the
# command at the same moment.
_MANAGE = """
import os, sys, time
from pathlib import Path
import django
django.setup()
import tests.celery_app
from django.core.management import execute_from_command_line
from django.db import connection
barrier = os.environ.get("KINWISE_FAULT_BARRIER")
if barrier:
    connection.ensure_connection()
    Path(barrier, f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + float(os.environ["KINWISE_FAULT_BARRIER_TIMEOUT"])
    while not Path(barrier, "go").exists():
        if time.monotonic() > deadline:
            sys.exit("kinwise-fault: the barrier was never released")
        time.sleep(0.001)
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""


@dataclass
class CommandRun:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float


@dataclass
class RunningCommand:
    args: tuple[str, ...]
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)

    def wait(self, timeout: float = COMMAND_TIMEOUT) -> CommandRun:
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate(timeout=PROCESS_STOP_TIMEOUT)
            pytest.fail(
                f"manage.py {' '.join(self.args)} did not finish within {timeout:.0f}s;"
                f" stdout={stdout!r} stderr={stderr[-4000:]!r}"
            )
        return CommandRun(
            args=self.args,
            returncode=int(self.process.returncode),
            stdout=stdout,
            stderr=stderr,
            elapsed=time.monotonic() - self.started,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=PROCESS_STOP_TIMEOUT)


def start_command(
    env: Mapping[str, str], *args: str, barrier: Path | None = None
) -> RunningCommand:
    """Start ``manage.py <args>`` in a subprocess with ``env`` (see :data:`_MANAGE`).

    With ``barrier``, it waits there for :func:`release_barrier` before running.
    """
    run_env = dict(env)
    if barrier is not None:
        run_env["KINWISE_FAULT_BARRIER"] = str(barrier)
        run_env["KINWISE_FAULT_BARRIER_TIMEOUT"] = str(COMMAND_TIMEOUT)
    process = subprocess.Popen(
        [sys.executable, "-c", _MANAGE, *args],
        cwd=REPO_ROOT,
        env=run_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return RunningCommand(args=args, process=process)


def run_command(
    env: Mapping[str, str], *args: str, timeout: float = COMMAND_TIMEOUT
) -> CommandRun:
    """Run ``manage.py <args>`` to completion (bounded); fail if it fails."""
    command = start_command(env, *args)
    try:
        result = command.wait(timeout)
    finally:
        command.kill()
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} exited with {result.returncode}: "
        f"stdout={result.stdout!r} stderr={result.stderr[-4000:]!r}"
    )
    return result


def release_barrier(
    barrier: Path, commands: list[RunningCommand], timeout: float = COMMAND_TIMEOUT
) -> None:
    """Once every command waits at ``barrier`` (bounded), let them all run at once."""
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob("ready-*"))) < len(commands):
        for command in commands:
            if command.process.poll() is not None:
                result = command.wait()
                pytest.fail(
                    f"manage.py {' '.join(command.args)} exited with "
                    f"{result.returncode} before the barrier: {result.stderr[-4000:]}"
                )
        if time.monotonic() > deadline:
            pytest.fail(f"the commands were not all ready within {timeout:.0f}s")
        time.sleep(0.02)
    (barrier / "go").touch()


_REPUBLISHED = re.compile(r"Re-published (\d+) outbox email")


def republished(result: CommandRun) -> int:
    """How many rows a ``kinwise_auth_redrive`` run says it re-published."""
    match = _REPUBLISHED.search(result.stdout)
    assert match, f"unexpected re-drive output: {result.stdout!r} {result.stderr!r}"
    return int(match.group(1))


@contextmanager
def publisher_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (the publishing side) at ``url``; restore."""
    from tests.celery_app import app

    previous = app.conf.broker_url
    app.conf["broker_url"] = url
    try:
        yield
    finally:
        app.conf["broker_url"] = previous


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.1,
    message: str,
) -> None:
    """Poll ``predicate()`` until true; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{message} (waited {timeout:.0f}s)")
        time.sleep(interval)


# --- HTTP ---------------------------------------------------------------------

# Straight to the live server, whatever proxy the environment configures.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Answer:
    """One HTTP answer and how long it took, request sent to body read."""

    status: int
    body: Any
    elapsed: float


def post_json(
    url: str, payload: Mapping[str, Any], *, timeout: float = HTTP_TIMEOUT
) -> Answer:
    """POST ``payload`` as JSON over real HTTP; time it, parse the JSON answer."""
    request = urllib.request.Request(
        url,
        data=json.dumps(dict(payload)).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    started = time.monotonic()
    try:
        with _opener.open(request, timeout=timeout) as response:
            raw = response.read()
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
            status = int(exc.code)
    elapsed = time.monotonic() - started
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return Answer(status=status, body=body, elapsed=elapsed)
