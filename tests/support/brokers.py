"""Brokers of a test's own, and what a Redis broker still holds.

Nothing here touches the shared services. A test starts its own ``redis-server``
on a spare loopback port and stops, kills or pauses it (:func:`private_redis`); a
hung broker is a socket that listens and never answers (:func:`hung_listener`);
:func:`fault_broker_url` is one private ``redis-server`` for the whole run, for
the workers the SMTP and worker fault tests kill.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from .processes import free_port, kill_group, spawn, stop_group
from .waiting import wait_until

__all__ = [
    "is_redis_url",
    "RedisServer",
    "private_redis",
    "fault_broker_url",
    "hung_listener",
    "publisher_broker",
    "redis_client",
    "broker_drained",
    "broker_backlog",
    "unacked",
    "flush",
]

REDIS_READY_TIMEOUT = 10.0
REDIS_TIMEOUT = 5.0  # seconds for a reply from a Redis that is up


def is_redis_url(url: str) -> bool:
    return urlsplit(url).scheme in {"redis", "rediss"}


def redis_client(url: str, timeout: float = REDIS_TIMEOUT) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout
    )


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
        return redis_client(self.url, timeout)

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
        process = self.process = spawn(
            [
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
            ],
            log_path=self.log_path,
            append=True,  # a restart keeps the earlier run's lines
        )

        def exited() -> None:
            if process.poll() is not None:
                pytest.fail(
                    f"redis-server on port {self.port} exited with "
                    f"{process.returncode}: {self.log()[-2000:]}"
                )

        wait_until(
            self.ping,
            timeout=REDIS_READY_TIMEOUT,
            what=f"redis-server on port {self.port} answering PING",
            interval=0.05,
            check=exited,
        )
        self.state = "running"

    def stop(self) -> None:
        """Shut it down (SIGTERM, SIGKILL if it lingers); the port then refuses."""
        if self.process is not None:
            stop_group(self.process)
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


_fault_broker: RedisServer | None = None


def fault_broker_url() -> str:
    """A private ``redis-server`` for the fault tests' workers, started on first
    use and stopped when the test process exits; nothing else uses it."""
    global _fault_broker
    if _fault_broker is None:
        log_dir = Path(tempfile.mkdtemp(prefix="kinwise-fault-broker-"))
        server = RedisServer(port=free_port(), log_path=log_dir / "redis.log")
        server.start()
        atexit.register(server.stop)
        _fault_broker = server
    return _fault_broker.url


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


# --- what a Redis broker holds --------------------------------------------------


def broker_drained(url: str, queue: str = "celery") -> bool:
    """No task message waits at ``url`` (queued, or delivered but not acked).

    Celery's Redis transport keeps a queue as lists (one per priority step, named
    after the queue) and unacknowledged messages in the ``unacked`` hash; with late
    acks a message leaves that hash only once its task ran.
    """
    client = redis_client(url)
    try:
        if client.hlen("unacked"):
            return False
        for key in client.scan_iter(match=f"{queue}*"):
            if client.type(key) in (b"list", "list") and client.llen(key):
                return False
        return True
    finally:
        client.close()


def broker_backlog(url: str) -> int:
    """Messages on the default queue, or delivered and not acknowledged, at a Redis
    broker ``url``; 0 for any other broker."""
    if not is_redis_url(url):
        return 0
    client = redis_client(url)
    try:
        return int(client.llen("celery")) + int(client.hlen("unacked"))
    finally:
        client.close()


def unacked(url: str) -> dict[str, float]:
    """Messages delivered to a worker and not acknowledged: tag -> delivery time."""
    client = redis_client(url)
    try:
        # Any: redis-py's reply types are unions of sync and async answers.
        pairs: Any = client.zrange("unacked_index", 0, -1, withscores=True)
        return {bytes(tag).decode(): float(score) for tag, score in pairs}
    finally:
        client.close()


def flush(url: str) -> None:
    """Delete every key of the Redis database at ``url`` (and of no other)."""
    client = redis_client(url)
    try:
        keys = list(client.scan_iter(count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
