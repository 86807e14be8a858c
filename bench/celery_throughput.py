"""Emails per second one Celery worker process delivers, and what a request pays
to enqueue one.

Run with ``make bench`` (or ``python bench/celery_throughput.py`` from the
repository root, PostgreSQL and Redis on 127.0.0.1). On a throwaway PostgreSQL
database (``kinwise_bench_celery``) it first times, in this process, what a
request pays per email: ``kinwise_auth.outbox.queue`` (the outbox row) inside a
transaction, its commit, and the ``on_commit`` publish to Redis (db 8). The
messages wait in Redis; then a real ``celery worker`` (prefork, concurrency 1)
starts and delivers them (claim, mint a login code, render, send) over SMTP to an
aiosmtpd sink in this process that answers at once. The rate is taken from the
first email to reach the sink to the last, so worker start-up is left out. Last,
the enqueue cost is split: the outbox insert alone, ``publishing.publish`` alone.
``BENCH_EMAILS`` (default 1000) sets how many.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bootstrap  # noqa: E402

BROKER = "redis://127.0.0.1:6379/8"
bootstrap("kinwise_bench_celery", broker=BROKER)

import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import redis  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.common import (  # noqa: E402
    ROOT,
    Accounts,
    SmtpSink,
    median_ms,
    percentile_ms,
    spawn,
    stop,
    throwaway_database,
)
from kinwise_auth import outbox, publishing  # noqa: E402
from kinwise_auth.models import OutboxEmail  # noqa: E402

EMAILS = int(os.environ.get("BENCH_EMAILS", "1000"))
TIMEOUT = 300.0


def enqueue(acc: Accounts, users: list[object]) -> tuple[list[float], list[float]]:
    """Queue one login-code email per user; (wall, CPU) seconds each, commit and
    publish included."""
    wall: list[float] = []
    cpu: list[float] = []
    for user in users:
        w, c = time.perf_counter(), time.process_time()
        with transaction.atomic():
            outbox.queue(
                OutboxEmail.Kind.LOGIN_CODE,
                user=user,
                recipient=user.email,  # type: ignore[attr-defined]
                context={"ip": "127.0.0.1"},
            )
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return wall, cpu


def breakdown(user: Any) -> tuple[float, float]:
    """Median CPU ms of ``publishing.publish`` alone and of the outbox insert alone.

    Run once the worker is gone: the extra messages are dropped with the broker.
    """
    row = OutboxEmail.objects.create(
        kind=OutboxEmail.Kind.LOGIN_CODE, user=user, recipient="x@bench.example"
    )
    publish: list[float] = []
    insert: list[float] = []
    for _ in range(EMAILS):
        started = time.process_time()
        publishing.publish(row.pk)
        publish.append(time.process_time() - started)
        started = time.process_time()
        with transaction.atomic():
            OutboxEmail.objects.create(
                kind=OutboxEmail.Kind.LOGIN_CODE, user=user, recipient="x@bench.example"
            )
        insert.append(time.process_time() - started)
    return median_ms(publish), median_ms(insert)


def start_worker(smtp_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KINWISE_TEST_DB": "postgres",
        # tests/settings.py uses this as NAME: the worker opens this database.
        "KINWISE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
        "KINWISE_TEST_BROKER_URL": BROKER,
        "KINWISE_TEST_SMTP_PORT": str(smtp_port),
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.celery_app",
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        "-l",
        "warning",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        f"kinwise-bench-{os.getpid()}@localhost",
    ]
    log.unlink(missing_ok=True)
    return spawn(command, env, log, ROOT)


def main() -> None:
    broker = redis.Redis.from_url(BROKER)
    broker.flushdb()
    with throwaway_database(), SmtpSink() as sink:
        acc = Accounts()
        users = [acc.user(acc.email("reader")) for _ in range(EMAILS)]
        connection.close()  # the worker forks its own connections
        wall, cpu = enqueue(acc, users)
        log = Path(tempfile.mkdtemp()) / "worker.log"
        worker = start_worker(sink.port, log)
        try:
            deadline = time.monotonic() + TIMEOUT
            while len(sink.arrivals) < EMAILS and time.monotonic() < deadline:
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited:\n{log.read_text()[-3000:]}")
                time.sleep(0.05)
        finally:
            stop(worker)
        arrived = sorted(sink.arrivals)
        sent = OutboxEmail.objects.filter(status=OutboxEmail.Status.SENT).count()
        publish_cpu, insert_cpu = breakdown(users[0])
        broker.flushdb()
    print(
        f"enqueue per email (queue() + commit + on_commit publish to Redis), "
        f"{EMAILS} emails: wall p50 {median_ms(wall):.2f} ms, p95 "
        f"{percentile_ms(wall, 95):.2f} ms; CPU p50 {median_ms(cpu):.2f} ms"
    )
    print(
        f"  of which: outbox insert and commit {insert_cpu:.2f} ms CPU, publish() "
        f"{publish_cpu:.2f} ms CPU (p50 of {EMAILS} each)"
    )
    if len(arrived) < 2:
        raise SystemExit(f"only {len(arrived)} emails arrived:\n{log.read_text()}")
    rate = (len(arrived) - 1) / (arrived[-1] - arrived[0])
    print(
        f"one worker process (prefork, concurrency 1), login-code emails to an "
        f"instant SMTP sink: {rate:.1f} emails/s ({len(arrived)}/{EMAILS} arrived, "
        f"{sent} marked sent)"
    )


if __name__ == "__main__":
    main()
