"""What one run of the re-drive (``requeue_unsent``) costs when it finds nothing.

Beat runs it every 10 s in the example project, so an email whose publish failed
leaves seconds after the broker returns. Run with ``make bench`` (or ``python
bench/redrive.py`` from the repository root, PostgreSQL on 127.0.0.1). On a
throwaway database (``kinwise_bench_redrive``) it fills the outbox with
``BENCH_OUTBOX_ROWS`` (default 1,000,000) sent rows, as a busy site keeps a week
of them, and a few pending rows too young for the re-drive; then it times
``outbox.requeue_unsent()`` against a bare baseline in the same process, one
``SELECT 1`` round trip in a transaction, and prints the query plan.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bootstrap  # noqa: E402

bootstrap("kinwise_bench_redrive")

import os  # noqa: E402
import time  # noqa: E402

from django.db import connection, transaction  # noqa: E402

from bench.common import median_ms, percentile_ms, throwaway_database  # noqa: E402
from kinwise_auth import outbox  # noqa: E402
from kinwise_auth.models import OutboxEmail  # noqa: E402

ROWS = int(os.environ.get("BENCH_OUTBOX_ROWS", "1000000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "300"))


def fill() -> float:
    """``ROWS`` sent rows over the past week and 20 fresh pending ones; seconds."""
    started = time.monotonic()
    table = OutboxEmail._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (kind, recipient, context, status, attempts, "
            "available_at, created_at, sent_at, last_error) "
            "SELECT 'login_code', 'user' || g || '@bench.example', '{}', 'sent', 1, "
            "now() - (g % 10080) * interval '1 minute', "
            "now() - (g % 10080) * interval '1 minute', now(), '' "
            f"FROM generate_series(1, {ROWS}) g"
        )
        cursor.execute(
            f"INSERT INTO {table} (kind, recipient, context, status, attempts, "
            "available_at, created_at, last_error) "
            "SELECT 'login_code', 'fresh' || g || '@bench.example', '{}', "
            "'pending', 0, now(), now(), '' FROM generate_series(1, 20) g"
        )
        cursor.execute(f"VACUUM ANALYZE {table}")
    return time.monotonic() - started


def baseline() -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def timed(call: object) -> tuple[list[float], list[float]]:
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(ROUNDS):
        w, c = time.perf_counter(), time.process_time()
        call()  # type: ignore[operator]
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return wall, cpu


def plan() -> str:
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    now = timezone.now()
    due = Q(status="pending", available_at__lte=now - timedelta(minutes=1))
    stale = Q(status="sending", claimed_until__lt=now)
    query = (
        OutboxEmail.objects.filter(due | stale)
        .order_by("available_at")
        .values_list("pk", flat=True)[:500]
    )
    return str(query.explain())


def main() -> None:
    with throwaway_database():
        connection.ensure_connection()
        print(
            f"outbox: {ROWS:,} sent rows + 20 fresh pending, filled in {fill():.1f} s"
        )
        for label, call in (
            ("baseline SELECT 1", baseline),
            ("requeue_unsent()", None),
        ):
            if call is None:
                assert outbox.requeue_unsent() == 0  # nothing due: the usual run
                call = outbox.requeue_unsent
            wall, cpu = timed(call)
            print(
                f"{label:<20} wall p50 {median_ms(wall):.3f} ms, "
                f"p90 {percentile_ms(wall, 90):.3f} ms; CPU p50 {median_ms(cpu):.3f} ms"
            )
            if label.startswith("baseline"):
                base_wall, base_cpu = median_ms(wall), median_ms(cpu)
        print(
            f"re-drive / baseline: wall x{median_ms(wall) / base_wall:.2f}, "
            f"CPU x{median_ms(cpu) / base_cpu:.2f}"
        )
        every = 10
        print(
            f"every {every} s: {median_ms(wall) / (every * 1000) * 100:.4f} % of one "
            "database connection's time"
        )
        print("plan:\n" + plan())


if __name__ == "__main__":
    main()
