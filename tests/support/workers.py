"""``celery worker`` and ``celery beat`` subprocesses on the test database.

A worker runs ``celery -A tests.celery_app`` with the environment of
:func:`subprocess_env`: the run's settings module, the test database, the broker
the test chose, and optionally an SMTP port and ``KINWISE_AUTH`` overrides
(``KINWISE_TEST_AUTH``). Whatever starts one stops it, also when the test fails.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from django.db import connection

from .brokers import fault_broker_url, flush, publisher_broker
from .processes import REPO_ROOT, LoggedProcess, spawn
from .waiting import wait_until

__all__ = [
    "WORKER_READY_TIMEOUT",
    "subprocess_env",
    "worker_command",
    "Worker",
    "start_worker",
    "start_beat",
    "Workers",
    "fault_workers",
]

WORKER_READY_TIMEOUT = 30.0  # a worker that is not consuming by then is broken


def subprocess_env(
    *,
    broker_url: str,
    db_name: str | None = None,
    smtp_port: int | None = None,
    auth: Mapping[str, Any] | None = None,
    visibility_timeout: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a Django process on the test database and ``broker_url``.

    ``db_name`` defaults to the test database's actual name (``tests/settings.py``
    uses it as NAME); ``auth`` becomes ``KINWISE_TEST_AUTH`` (merged into
    ``KINWISE_AUTH``, durations in seconds); the broker's visibility timeout is
    the settings' default unless ``visibility_timeout`` is given.
    """
    env = {
        **os.environ,
        # pytest-django exports the run's settings module (--ds, ini or env).
        "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"],
        "KINWISE_TEST_DB": "postgres",
        "KINWISE_TEST_DB_NAME": db_name or str(connection.settings_dict["NAME"]),
        "KINWISE_TEST_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",  # the log file is read while it runs
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    if smtp_port is not None:
        env["KINWISE_TEST_SMTP_PORT"] = str(smtp_port)
    if auth is not None:
        env["KINWISE_TEST_AUTH"] = json.dumps(dict(auth))
    env.pop("KINWISE_TEST_VISIBILITY_TIMEOUT", None)
    if visibility_timeout is not None:
        env["KINWISE_TEST_VISIBILITY_TIMEOUT"] = str(visibility_timeout)
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
class Worker(LoggedProcess):
    """A ``celery worker`` subprocess in a group of its own, and its log file; as
    a context manager, ready on entry and stopped (warm shutdown) on exit."""

    nodename: str = ""

    def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT) -> None:
        """Until it logs ``<nodename> ready.``: consuming, its pool started."""
        wait_until(
            lambda: f"{self.nodename} ready." in self.log(),
            timeout=timeout,
            what=f"{self.name} ready",
            check=self.assert_alive,
            details=self.log_tail,
        )

    def __enter__(self) -> Self:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self


def start_worker(
    env: Mapping[str, str],
    *,
    log_path: Path,
    nodename: str | None = None,
    queue: str = "celery",
    pool: str = "solo",
    concurrency: int = 1,
) -> Worker:
    """Start ``celery -A tests.celery_app worker`` with ``env`` (see
    :func:`subprocess_env`; its broker is the worker's), not waiting for it:
    ``with start_worker(...) as worker:`` waits until it is ready."""
    node = nodename or f"kinwise-worker-{uuid.uuid4().hex[:10]}@localhost"
    process = spawn(
        worker_command(node, pool=pool, concurrency=concurrency, queue=queue),
        log_path=log_path,
        env=env,
        cwd=REPO_ROOT,
    )
    return Worker(
        process=process, log_path=log_path, name=f"celery worker {node}", nodename=node
    )


def start_beat(
    env: Mapping[str, str], *, log_path: Path, schedule_dir: Path
) -> LoggedProcess:
    """Start ``celery -A tests.celery_app beat`` with ``env`` (``with`` it to stop
    it on exit). Its schedule file lives in ``schedule_dir``; ``env`` sets what it
    schedules."""
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
    return LoggedProcess(
        process=spawn(command, log_path=log_path, env=env, cwd=REPO_ROOT),
        log_path=log_path,
        name="celery beat",
    )


@dataclass
class Workers:
    """Prefork workers (main process and one pool child) on ``broker_url``, which a
    test starts and may SIGKILL; :meth:`close` kills what is left."""

    broker_url: str
    log_dir: Path
    started: list[Worker] = field(default_factory=list)

    def env(
        self,
        smtp_port: int,
        auth: Mapping[str, Any],
        visibility_timeout: int | None = None,
    ) -> dict[str, str]:
        """The environment of a worker (or command) of these, on the test database."""
        return subprocess_env(
            broker_url=self.broker_url,
            smtp_port=smtp_port,
            auth=auth,
            visibility_timeout=visibility_timeout,
        )

    def start(
        self,
        smtp_port: int,
        auth: Mapping[str, Any],
        *,
        visibility_timeout: int | None = None,
        ready: bool = True,
    ) -> Worker:
        nodename = f"kinwise-fault-{uuid.uuid4().hex[:10]}@localhost"
        # prefork: the test kills the pool process as well as the main one.
        worker = start_worker(
            self.env(smtp_port, auth, visibility_timeout),
            log_path=self.log_dir / f"{nodename.split('@')[0]}.log",
            nodename=nodename,
            pool="prefork",
        )
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
def fault_workers(log_dir: Path) -> Iterator[Workers]:
    """Workers on :func:`~.brokers.fault_broker_url`, which this process publishes
    to meanwhile. The broker is emptied before and after; every worker is killed
    on exit."""
    url = fault_broker_url()
    flush(url)
    workers = Workers(broker_url=url, log_dir=log_dir)
    try:
        with publisher_broker(url):
            yield workers
    finally:
        try:
            workers.close()
        finally:
            flush(url)
