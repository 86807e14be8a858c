"""Every endpoint over HTTP: gunicorn (2 workers) serving the example project on
PostgreSQL and Redis, a real Celery worker sending to a local SMTP sink, and a
bounded closed-loop load from this process (loopback only).

Run with ``make bench`` (or ``python bench/http_load.py`` from the repository root with
the example project's requirements, gunicorn and aiosmtpd installed; PostgreSQL
and Redis on 127.0.0.1). The example project reads its settings from the
environment: database ``kinwise_bench_http`` (created and dropped here), cache
Redis db 9, broker Redis db 8, rate limits off, DEBUG off, Django's default
password hasher (PBKDF2), ``CONN_MAX_AGE=60``. Each endpoint is loaded by
``BENCH_HTTP_CLIENTS`` (default 8) clients for ``BENCH_HTTP_SECONDS`` (default 5)
while the SMTP sink answers at once and as long while it waits 300 ms per
message, in alternating halves (the broker's queues emptied before each); the
worker is capped at the same delivery rate for both sinks. Every
request carries fresh valid input minted before the clock starts. It prints
req/s, p50, p95, p99 and errors, and how far p95 moved (target: ≤ 5 %). The
worker runs at the lowest CPU priority (``nice 19``), as a deployment would give
it cores of its own: the figure is then about waiting for SMTP, not about sharing
two cores with a worker that sends faster to the faster sink.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
sys.path[:0] = [str(EXAMPLE), str(ROOT)]

import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
import redis  # noqa: E402

from bench.common import (  # noqa: E402
    OTHER_PASSWORD,
    PASSWORD,
    SmtpSink,
    free_port,
    median_ms,
    percentile_ms,
    spawn,
    stop,
)

DB_NAME = "kinwise_bench_http"
BROKER = "redis://127.0.0.1:6379/8"
CACHE = "redis://127.0.0.1:6379/9"
CLIENTS = int(os.environ.get("BENCH_HTTP_CLIENTS", "8"))
SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", "5"))
POOL = int(os.environ.get("BENCH_HTTP_POOL", "1500"))
REPEATS = 2  # each sink's share, alternated: drift on a shared machine cancels
SLOW_SMTP = 0.3
# Below what two worker processes deliver to the slow sink (2 / 0.3 s).
DELIVERY_RATE = "3/s"
TARGET = 0.05
API = "/api/v1/auth/"

ENV = {
    "ENV_FILE": "",
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
    "CONN_MAX_AGE": "60",
    "CACHE_URL": CACHE,
    "CELERY_BROKER_URL": BROKER,
    "RATELIMIT_ENABLE": "false",
    "DEBUG": "false",
    "SECRET_KEY": "bench-only-secret-key-" + "k" * 40,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "FRONTEND_URL": "https://app.example.com",
    "SECURE_SSL_REDIRECT": "false",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "127.0.0.1",
    "LOG_LEVEL": "WARNING",
}

Request = tuple[str, str, dict[str, Any] | None, dict[str, str]]


def admin(sql: str) -> None:
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(sql)


class Minter:
    """Fresh valid inputs, made in bulk in the database the server uses."""

    def __init__(self) -> None:
        from django.contrib.auth.hashers import make_password

        self.hash = make_password(PASSWORD)  # once: PBKDF2 is slow on purpose
        self.serial = 0

    def users(self, n: int, *, verified: bool = True, tag: str = "u") -> list[Any]:
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from kinwise_auth.models import EmailIdentity

        model = get_user_model()
        made = []
        for _ in range(n):
            self.serial += 1
            email = f"{tag}{self.serial}@bench.example"
            made.append(
                model(
                    username=email, email=email, password=self.hash, is_active=verified
                )
            )
        made = model._default_manager.bulk_create(made)
        now = timezone.now()
        EmailIdentity.objects.bulk_create(
            EmailIdentity(
                user=u,
                email=u.email,
                email_normalized=u.email,
                verified_at=now if verified else None,
            )
            for u in made
        )
        return made

    def links(self, users: list[Any], purpose: str, moved: bool = False) -> list[str]:
        from django.utils import timezone

        from kinwise_auth import crypto
        from kinwise_auth.models import LinkToken

        tokens = [crypto.new_link_token() for _ in users]
        LinkToken.objects.bulk_create(
            LinkToken(
                user=u,
                purpose=purpose,
                token_hash=crypto.keyed_hash(t),
                email=f"moved-{u.email}" if moved else "",
                expires_at=timezone.now() + timedelta(hours=1),
            )
            for u, t in zip(users, tokens, strict=True)
        )
        return tokens

    def codes(self, users: list[Any]) -> list[str]:
        from django.utils import timezone

        from kinwise_auth import crypto
        from kinwise_auth.models import LoginCode

        codes = [crypto.new_login_code(6) for _ in users]
        LoginCode.objects.bulk_create(
            LoginCode(
                user=u,
                code_hash=crypto.keyed_hash(crypto.login_code_message(u.pk, c)),
                expires_at=timezone.now() + timedelta(minutes=10),
            )
            for u, c in zip(users, codes, strict=True)
        )
        return codes

    @staticmethod
    def bearer(user: Any) -> dict[str, str]:
        from rest_framework_simplejwt.tokens import RefreshToken

        return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}

    @staticmethod
    def refresh(user: Any) -> str:
        from rest_framework_simplejwt.tokens import RefreshToken

        return str(RefreshToken.for_user(user))


def post(
    path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Request:
    return "POST", API + path, body, headers or {}


def endpoints(
    m: Minter, fixed: dict[str, Any]
) -> dict[str, Callable[[int], list[Request]]]:
    """For each endpoint, a function making ``n`` fresh requests."""
    known, pending = fixed["known"], fixed["pending"]

    def verify_email(n: int) -> list[Request]:
        tokens = m.links(m.users(n, verified=False, tag="p"), "verify_email")
        return [post("verify-email/", {"token": t}) for t in tokens]

    def otp_verify(n: int) -> list[Request]:
        users = m.users(n)
        return [
            post("otp/verify/", {"email": u.email, "code": c})
            for u, c in zip(users, m.codes(users), strict=True)
        ]

    def reset_confirm(n: int) -> list[Request]:
        body = {"new_password": OTHER_PASSWORD, "new_password_confirm": OTHER_PASSWORD}
        tokens = m.links(m.users(n), "password_reset")
        return [post("password/reset/confirm/", {"token": t, **body}) for t in tokens]

    def change(n: int) -> list[Request]:
        body = {
            "current_password": PASSWORD,
            "new_password": OTHER_PASSWORD,
            "new_password_confirm": OTHER_PASSWORD,
        }
        return [post("password/change/", body, m.bearer(u)) for u in m.users(n)]

    def email_change(n: int) -> list[Request]:
        return [
            post(
                "email/change/",
                {"new_email": f"new-{u.email}", "password": PASSWORD},
                m.bearer(u),
            )
            for u in m.users(n)
        ]

    def email_confirm(n: int) -> list[Request]:
        tokens = m.links(m.users(n), "email_change", moved=True)
        return [post("email/change/confirm/", {"token": t}) for t in tokens]

    def delete(n: int) -> list[Request]:
        return [
            post("account/delete/", {"password": PASSWORD}, m.bearer(u))
            for u in m.users(n)
        ]

    def register(n: int) -> list[Request]:
        m.serial += n
        return [
            post(
                "register/",
                {
                    "email": f"r{m.serial - i}@bench.example",
                    "password": PASSWORD,
                    "password_confirm": PASSWORD,
                },
            )
            for i in range(n)
        ]

    def same(req: Request) -> Callable[[int], list[Request]]:
        return lambda n: [req] * (n * 20)

    def refreshes(path: str) -> Callable[[int], list[Request]]:
        return lambda n: [post(path, {"refresh": m.refresh(known)}) for _ in range(n)]

    return {
        "register/": register,
        "verify-email/": verify_email,
        "resend-verification/": same(
            post("resend-verification/", {"email": pending.email})
        ),
        "otp/request/": same(post("otp/request/", {"email": known.email})),
        "otp/verify/": otp_verify,
        "login/": same(post("login/", {"email": known.email, "password": PASSWORD})),
        "token/refresh/": refreshes("token/refresh/"),
        "logout/": refreshes("logout/"),
        "me/": lambda n: [("GET", API + "me/", None, m.bearer(known))] * (n * 20),
        "password/reset/": same(post("password/reset/", {"email": known.email})),
        "password/reset/confirm/": reset_confirm,
        "password/change/": change,
        "email/change/": email_change,
        "email/change/confirm/": email_confirm,
        "account/delete/": delete,
    }


# Endpoints that hash a password (PBKDF2): a few requests a second per core.
SLOW = {
    "password/reset/confirm/",
    "password/change/",
    "email/change/",
    "account/delete/",
}


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    exhausted: bool = False

    def add(self, other: Result) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.exhausted |= other.exhausted


def load(port: int, requests: list[Request]) -> Result:
    """CLIENTS closed-loop clients for SECONDS, each request used once."""
    result = Result()
    lock = threading.Lock()
    feed = iter(requests)
    deadline = time.perf_counter() + SECONDS / REPEATS

    def client() -> None:
        while time.perf_counter() < deadline:
            with lock:
                req = next(feed, None)
            if req is None:
                result.exhausted = True
                return
            method, path, body, headers = req
            data = json.dumps(body).encode() if body is not None else None
            heads = {"Content-Type": "application/json", **headers}
            started = time.perf_counter()
            ok = False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request(method, path, body=data, headers=heads)
                response = conn.getresponse()
                response.read()
                conn.close()
                ok = response.status < 300
            except OSError:
                pass
            elapsed = time.perf_counter() - started
            with lock:
                result.latencies.append(elapsed)
                result.errors += not ok

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - started
    return result


def limit_delivery_rate(node: str) -> None:
    """Cap the worker at DELIVERY_RATE emails/s, whichever sink it sends to.

    Sending faster to the instant sink would load the shared database more (claims,
    tokens, status updates) and slow the requests for that reason alone; at the
    same rate, the only difference left between the two runs is how long SMTP
    takes.
    """
    from celery import Celery

    app = Celery("kinwise-bench-control", broker=BROKER, set_as_current=False)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            replies = app.control.rate_limit(
                "kinwise_auth.tasks.deliver",
                DELIVERY_RATE,
                destination=[node],
                reply=True,
                timeout=1.0,
            )
            if replies:
                return
        raise SystemExit(f"the worker {node} never answered the rate limit")
    finally:
        app.close()


def wait_for_server(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", API + "me/")
            if conn.getresponse().status == 401:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer:\n{log.read_text()[-3000:]}")


def line(name: str, sink: str, r: Result) -> str:
    rate = len(r.latencies) / r.elapsed if r.elapsed else 0.0
    note = " (inputs ran out)" if r.exhausted else ""
    return (
        f"{name:24} {sink:6} {rate:8.1f} {median_ms(r.latencies):8.1f}"
        f" {percentile_ms(r.latencies, 95):8.1f} {percentile_ms(r.latencies, 99):8.1f}"
        f" {r.errors:6d}{note}"
    )


def main() -> None:
    os.environ.update(ENV)
    admin(f"DROP DATABASE IF EXISTS {DB_NAME}")
    admin(f"CREATE DATABASE {DB_NAME}")
    broker = redis.Redis.from_url(BROKER)
    broker.flushdb()
    redis.Redis.from_url(CACHE).flushdb()
    logs = Path(tempfile.mkdtemp())
    processes: list[subprocess.Popen[bytes]] = []
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        m = Minter()
        (known,) = m.users(1, tag="known")
        (pending,) = m.users(1, verified=False, tag="pending")
        makers = endpoints(m, {"known": known, "pending": pending})

        with SmtpSink() as sink:
            env = {**os.environ, "EMAIL_PORT": str(sink.port), "PYTHONPATH": str(ROOT)}
            port = free_port()
            server_log = logs / "gunicorn.log"
            server = spawn(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "config.wsgi:application",
                    "--workers=2",
                    f"--bind=127.0.0.1:{port}",
                    "--log-level=warning",
                ],
                env,
                server_log,
                EXAMPLE,
            )
            processes.append(server)
            processes.append(
                spawn(
                    [
                        # At the lowest priority: on two cores the worker would
                        # otherwise take CPU from gunicorn in proportion to how
                        # fast the sink answers, and p95 would measure that.
                        "nice",
                        "-n",
                        "19",
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "worker",
                        "-l",
                        "warning",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "--concurrency",
                        "2",
                        "-n",
                        f"kinwise-bench-http-{os.getpid()}@localhost",
                    ],
                    env,
                    logs / "worker.log",
                    EXAMPLE,
                )
            )
            wait_for_server(port, server, server_log)
            limit_delivery_rate(f"kinwise-bench-http-{os.getpid()}@localhost")
            print(
                f"gunicorn 2 workers, {CLIENTS} clients, {SECONDS:.0f} s per endpoint "
                f"and sink in {REPEATS} alternating parts; sinks: instant, "
                f"{SLOW_SMTP * 1e3:.0f} ms per message; worker capped at "
                f"{DELIVERY_RATE} for both"
            )
            print(
                f"{'endpoint':24} {'sink':6} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}"
                f" {'p99 ms':>8} {'errors':>6}"
            )
            moves: list[tuple[str, float]] = []
            for name, make in makers.items():
                results = {"now": Result(), "300ms": Result()}
                for _ in range(REPEATS):
                    for sink_name, delay in (("now", 0.0), ("300ms", SLOW_SMTP)):
                        broker.delete("auth", "celery")
                        sink.delay = delay
                        part = load(port, make(200 if name in SLOW else POOL))
                        results[sink_name].add(part)
                for sink_name, result in results.items():
                    print(line(name, sink_name, result), flush=True)
                p95 = [percentile_ms(r.latencies, 95) for r in results.values()]
                moves.append((name, p95[1] / p95[0] - 1))
            print(f"\np95, 300 ms sink against instant sink (target ±{TARGET:.0%})")
            for name, move in moves:
                verdict = "met" if abs(move) <= TARGET else "NOT met"
                print(f"{name:24} {move:+7.1%}  {verdict}")
            print(f"emails that reached the sink during the run: {len(sink.arrivals)}")
    finally:
        for process in processes:
            stop(process)
        from django.db import connections

        connections.close_all()
        admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        broker.flushdb()


if __name__ == "__main__":
    main()
