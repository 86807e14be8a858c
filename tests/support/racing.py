"""Requests sent at the same moment: one client thread each, held at a barrier.

Each thread connects first and sends its request only once every thread is
connected: pytest-django's live server listens with a backlog of 10 (Django's
``WSGIServer``), and twenty connections opened at once overflow it (the kernel
drops the extra SYNs, which the clients resend a second later, after the race).
"""

from __future__ import annotations

import functools
import http.client
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from .http import Answer, opener, request_json

__all__ = ["RACE_HTTP_TIMEOUT", "Call", "connect", "send", "together", "race"]

T = TypeVar("T")

RACE_HTTP_TIMEOUT = 30.0  # urllib's timeout, for connecting and for each read
BARRIER_TIMEOUT = 10.0  # for every thread to be connected and waiting
JOIN_TIMEOUT = BARRIER_TIMEOUT + 2 * RACE_HTTP_TIMEOUT  # for the whole race


@dataclass(frozen=True)
class Call:
    """One request of a race: a JSON POST to ``url`` with extra ``headers``."""

    url: str
    payload: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class _Connected(urllib.request.HTTPHandler):
    """urllib's HTTP handler, sending on a connection opened beforehand."""

    def __init__(self, connection: http.client.HTTPConnection) -> None:
        super().__init__()
        self.connection = connection

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(lambda host, **kwargs: self.connection, req)


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.hostname, url
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=RACE_HTTP_TIMEOUT
    )
    conn.connect()
    return conn


def send(conn: http.client.HTTPConnection, call: Call) -> Answer:
    """POST ``call`` on ``conn``, opened beforehand, then close it."""
    try:
        return request_json(
            "POST",
            call.url,
            call.payload,
            headers=call.headers,
            timeout=RACE_HTTP_TIMEOUT,
            via=opener(_Connected(conn)),
        )
    finally:
        conn.close()


def together(
    jobs: Sequence[tuple[str, Callable[[http.client.HTTPConnection], T]]],
    name: str = "race-client",
) -> list[T]:
    """Run every ``(url, job)`` at once, one thread each; the results in order.

    Each thread connects to its URL, waits at the barrier, then calls ``job``
    with the open connection. The threads only do HTTP (no database access of
    their own). Every wait is bounded: a thread still running after
    ``JOIN_TIMEOUT`` fails the test (it is a daemon, so it cannot keep the run
    alive either).
    """
    barrier = threading.Barrier(len(jobs), timeout=BARRIER_TIMEOUT)
    results: list[T | None] = [None] * len(jobs)
    errors: list[str] = []
    lock = threading.Lock()

    def client(
        index: int, url: str, job: Callable[[http.client.HTTPConnection], T]
    ) -> None:
        conn: http.client.HTTPConnection | None = None
        try:
            conn = connect(url)
            barrier.wait()
            results[index] = job(conn)
        except BaseException as exc:  # reported below, with the thread that saw it
            barrier.abort()  # nobody waits for a thread that will not come
            with lock:
                errors.append(f"client {index}: {type(exc).__name__}: {exc}")
        finally:
            if conn is not None:
                conn.close()

    threads = [
        threading.Thread(
            target=client, args=(i, url, job), name=f"{name}-{i}", daemon=True
        )
        for i, (url, job) in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        barrier.abort()
        pytest.fail(f"still running after {JOIN_TIMEOUT:.0f}s: {stuck}")
    if errors:
        pytest.fail("a client failed: " + "; ".join(sorted(errors)))
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def race(calls: Sequence[Call], name: str = "race-client") -> list[Answer]:
    """Send every call at once, one thread each; the answers in order."""
    return together(
        [(call.url, functools.partial(send, call=call)) for call in calls], name
    )
