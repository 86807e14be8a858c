"""Latency of code-verify, verify-email and login on small and on large tables,
and the purge of a million expired rows.

Run with ``make bench`` (or ``python bench/scale.py`` from the repository root).
On a throwaway PostgreSQL database (``kinwise_bench_scale``) it times the three
endpoints (wall clock, in this process, through Django's full request stack) on
small tables, then seeds in SQL 1 000 000 verified users with their identities
and 5 000 000 rows each of login codes, link tokens and audit events,
VACUUM ANALYZEs, times them again and prints the ratios (target ≤ 1.2×). Then it runs
``kinwise_auth.maintenance.purge_expired`` on the 1 000 000 expired codes and
tokens and reports each batch's DELETE (the time its row locks are held). Last,
it empties the tables and times the small case again, so that drift on a shared
machine shows beside the ratio.

``BENCH_SCALE`` multiplies every row count (``BENCH_SCALE=0.01`` for a quick
run); ``BENCH_ROUNDS`` (default 200) sets the timed calls per endpoint and size.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bootstrap  # noqa: E402

bootstrap("kinwise_bench_scale")

import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from bench.common import (  # noqa: E402
    Accounts,
    median_ms,
    percentile_ms,
    seed,
    throwaway_database,
)
from bench.endpoints import BY_NAME, Request, account, request, through  # noqa: E402
from kinwise_auth.maintenance import purge_expired  # noqa: E402
from kinwise_auth.models import (  # noqa: E402
    AuthEvent,
    EmailIdentity,
    LinkToken,
    LoginCode,
)

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "200"))
USERS = int(1_000_000 * SCALE)
ROWS = int(5_000_000 * SCALE)
EXPIRED = int(1_000_000 * SCALE)
SMALL_USERS, SMALL_ROWS = 100, 500
TARGET = 1.2


def calls(acc: Accounts, prefix: str, users: int) -> dict[str, Callable[[], Request]]:
    """Fresh valid input per call: a seeded account signs in; a new one verifies."""
    model = get_user_model()
    otp_verify, verify_email, login = (
        BY_NAME[name] for name in ("otp/verify/", "verify-email/", "login/")
    )

    def seeded() -> str:
        return f"{prefix}{random.randint(1, users)}@seed.example"

    def fresh_code() -> Request:
        user = model._default_manager.get(**{model.get_email_field_name(): seeded()})
        return request(otp_verify, acc, user)

    def fresh_link() -> Request:
        return request(verify_email, acc, account(verify_email, acc))

    def seeded_login() -> Request:
        # The address alone: the bench reads nothing of the account first.
        return request(login, acc, email=seeded())

    return {
        "otp/verify/": fresh_code,
        "verify-email/": fresh_link,
        "login/": seeded_login,
    }


@contextmanager
def timed_statements() -> Iterator[list[tuple[str, float]]]:
    """Record (first word, seconds) of every SQL statement and COMMIT run inside."""
    seen: list[tuple[str, float]] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            seen.append((sql.split(None, 1)[0].upper(), time.perf_counter() - started))

    commit = connection.commit

    def timed_commit() -> None:
        # Commits bypass execute_wrapper; their WAL flush is database time too.
        started = time.perf_counter()
        try:
            commit()
        finally:
            seen.append(("COMMIT", time.perf_counter() - started))

    connection.commit = timed_commit  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(wrapper):
            yield seen
    finally:
        del connection.commit


def measure(prefix: str, users: int) -> dict[str, tuple[list[float], ...]]:
    """Wall time, SQL time (statements summed), commit time and this process's
    CPU time of each endpoint, round-robin, after a warm-up."""
    acc = Accounts()
    client = APIClient()
    makers = calls(acc, prefix, users)
    times: dict[str, tuple[list[float], ...]] = {
        name: ([], [], [], []) for name in makers
    }
    for n in range(10 + ROUNDS):
        for name, make in makers.items():
            send = through(client, make())
            with timed_statements() as statements:
                started, cpu = time.perf_counter(), time.process_time()
                response = send()
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert response.status_code == 200, (name, response.content)
            if n >= 10:
                times[name][0].append(elapsed)
                times[name][1].append(sum(t for w, t in statements if w != "COMMIT"))
                times[name][2].append(sum(t for w, t in statements if w == "COMMIT"))
                times[name][3].append(cpu)
    return times


def lock_spans(statements: list[tuple[str, float]]) -> list[float]:
    """Per DELETE, its time plus the COMMIT right after it: how long a purge
    batch holds its row locks."""
    spans = []
    for i, (word, seconds) in enumerate(statements):
        if word != "DELETE":
            continue
        after = statements[i + 1] if i + 1 < len(statements) else ("", 0.0)
        spans.append(seconds + (after[1] if after[0] == "COMMIT" else 0.0))
    return spans


def main() -> None:
    with throwaway_database():
        seed(SMALL_USERS, SMALL_ROWS, 0, prefix="small")
        small = measure("small", SMALL_USERS)

        started = time.perf_counter()
        took = seed(USERS, ROWS, EXPIRED)
        seeded = time.perf_counter() - started
        print(
            f"seeded {USERS:,} users and {ROWS:,} rows each of codes, tokens and "
            f"events in {seeded:.0f} s"
        )
        for table, seconds in took.items():
            print(f"  {table:32} {seconds:7.1f} s (insert + VACUUM ANALYZE)")
        large = measure("seed", USERS)

        started = time.perf_counter()
        with timed_statements() as statements:
            purged = purge_expired()
        total = time.perf_counter() - started
        deletes = lock_spans(statements)
        selects = [t for word, t in statements if word == "SELECT"]
        print(
            f"\npurge_expired: {purged} in {total:.1f} s; {len(deletes)} DELETE "
            f"batches (DELETE to COMMIT): p50 {median_ms(deletes):.1f} ms, p99 "
            f"{percentile_ms(deletes, 99):.1f} ms, longest {max(deletes) * 1e3:.1f} ms "
            f"(locks held); batch SELECTs p50 {median_ms(selects):.1f} ms, longest "
            f"{max(selects) * 1e3:.1f} ms"
        )
        print(
            f"\nwall time per request, {ROUNDS} rounds (target: large ≤ {TARGET}×);"
            " SQL: its statements summed; commit: its COMMITs; CPU: this process"
        )
        print(
            f"{'endpoint':14} {'small p50':>10} {'large p50':>10} {'ratio':>6}"
            f" {'small p90':>10} {'large p90':>10} {'SQL small':>10} {'SQL large':>10}"
            f" {'commit s.':>10} {'commit l.':>10} {'CPU s.':>8} {'CPU l.':>8}"
        )
        for name in small:
            s50, l50 = median_ms(small[name][0]), median_ms(large[name][0])
            ratio = l50 / s50
            verdict = (
                "met" if ratio <= TARGET else f"NOT met (+{ratio / TARGET - 1:.0%})"
            )
            print(
                f"{name:14} {s50:8.2f}ms {l50:8.2f}ms {ratio:6.2f}"
                f" {percentile_ms(small[name][0], 90):8.2f}ms"
                f" {percentile_ms(large[name][0], 90):8.2f}ms"
                f" {median_ms(small[name][1]):8.2f}ms"
                f" {median_ms(large[name][1]):8.2f}ms"
                f" {median_ms(small[name][2]):8.2f}ms"
                f" {median_ms(large[name][2]):8.2f}ms"
                f" {median_ms(small[name][3]):6.2f}ms"
                f" {median_ms(large[name][3]):6.2f}ms  {verdict}"
            )

        # Small tables again, so drift on a shared machine shows: the large
        # figures are bracketed by two small runs.
        with connection.cursor() as cursor:
            tables = ", ".join(
                m._meta.db_table
                for m in (
                    get_user_model(),
                    EmailIdentity,
                    LoginCode,
                    LinkToken,
                    AuthEvent,
                )
            )
            cursor.execute(f"TRUNCATE {tables} CASCADE")
        seed(SMALL_USERS, SMALL_ROWS, 0, prefix="small")
        after = measure("small", SMALL_USERS)
        print("\nsmall tables again, after the large ones were emptied:")
        for name in after:
            a50 = median_ms(after[name][0])
            print(
                f"{name:14} p50 {a50:.2f} ms, CPU {median_ms(after[name][3]):.2f} ms;"
                f" large/after {median_ms(large[name][0]) / a50:.2f}"
            )
    print(f"\n{connection.vendor}, {get_user_model().__name__}, BENCH_SCALE={SCALE}")


if __name__ == "__main__":
    main()
