"""CPU time per request of every endpoint, beside two bare baselines.

Run with ``make bench`` (or ``python bench/request_cpu.py`` from the repository root
with the package and its test requirements installed, PostgreSQL on 127.0.0.1).
Every request goes through Django's full request stack (DRF's ``APIClient``) in
this process, on a throwaway PostgreSQL database (``KINWISE_TEST_DB_NAME``,
``kinwise_bench`` by default) that the script creates and drops. Each round calls
every endpoint and both baselines once, each with fresh valid input made before
the clock starts, and times the call with ``time.process_time`` (this process's
CPU: the database's own work is not in it). It prints medians and the ratios:

* **A**, a bare DRF ``APIView`` (no authentication, permission or throttle
  classes, the JSON parser) that reads a user by email and inserts one row;
* **B**, A plus a simplejwt pair (``RefreshToken.for_user``).

The overhead figures use the tests' fast hasher (MD5) everywhere; the endpoints
that hash a password are then timed again with Django's default PBKDF2 and
reported apart. Emails go to an in-memory broker (nothing delivers them, as in a
web process); rate limits are off. ``BENCH_ROUNDS`` (default 200) and
``BENCH_SLOW_ROUNDS`` (default 8) set the rounds. ``BENCH_ONLY``, a
comma-separated list of endpoints as printed (``login/,me/``), times only those
beside the two baselines; unset, every endpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bootstrap  # noqa: E402

bootstrap("kinwise_bench")

import os  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.urls import clear_url_caches, include, path  # noqa: E402
from rest_framework.parsers import JSONParser  # noqa: E402
from rest_framework.renderers import JSONRenderer  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402
from rest_framework.views import APIView  # noqa: E402
from rest_framework_simplejwt.tokens import RefreshToken  # noqa: E402

from bench.common import (  # noqa: E402
    DEFAULT_HASHER,
    FAST_HASHER,
    Accounts,
    median_ms,
    percentile_ms,
    throwaway_database,
    use_hasher,
)
from bench.endpoints import (  # noqa: E402
    ENDPOINTS,
    Endpoint,
    account,
    request,
    through,
)
from bench.endpoints import Request as Prepared  # noqa: E402
from kinwise_auth.models import AuthEvent  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "200"))
SLOW_ROUNDS = int(os.environ.get("BENCH_SLOW_ROUNDS", "8"))
ONLY = {name.strip() for name in os.environ.get("BENCH_ONLY", "").split(",")} - {""}
WARMUP = 10


class BaselineA(APIView):
    """The least an endpoint does: read a user by email, insert one row."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    def find_and_record(self, request: Request) -> Any:
        model = get_user_model()
        email = str(request.data.get("email", ""))
        user = model._default_manager.filter(
            **{model.get_email_field_name(): email}
        ).first()
        AuthEvent.objects.create(event_type="bench", user=user)
        return user

    def post(self, request: Request) -> Response:
        user = self.find_and_record(request)
        return Response({"id": user.pk if user else None})


class BaselineB(BaselineA):
    """Baseline A, then a simplejwt access/refresh pair for the user."""

    def post(self, request: Request) -> Response:
        user = self.find_and_record(request)
        refresh = RefreshToken.for_user(user)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh)})


urlpatterns = [
    path("bench/a/", BaselineA.as_view()),
    path("bench/b/", BaselineB.as_view()),
    path("api/v1/auth/", include("kinwise_auth.urls")),
]

# The targets, against baseline A or B (times its median CPU).
TARGETS = {
    "register/": ("A", 2.0),
    "verify-email/": ("A", 1.5),
    "otp/request/": ("A", 1.5),
    "otp/verify/": ("B", 1.5),
    "login/": ("B", 1.3),
}
LABELS = {"verify-email/": "verify-email/ (POST)"}
# One request at a time here: these reuse a standing account (passwords
# alternate) instead of one of their own.
REUSED = {
    "otp/verify/": "known",
    "password/reset/confirm/": "resetter",
    "password/change/": "changer",
    "email/change/": "known",
}


@dataclass
class Case:
    """One timed request: ``prepare`` makes fresh input, untimed."""

    name: str
    prepare: Callable[[Accounts], Prepared]
    hashes: bool = False
    target: tuple[str, float] | None = None
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)


BASELINES = ("baseline A", "baseline B")


def baseline(name: str, url: str) -> Case:
    """A bare view, called with the standing account's address."""

    def prepare(acc: Accounts) -> Prepared:
        return "POST", url, {"email": acc.address(acc.standing("known"))}, {}

    return Case(name, prepare)


def endpoint(ep: Endpoint) -> Case:
    """``ep`` from the catalogue, as the account its entry (or REUSED) names."""

    def prepare(acc: Accounts) -> Prepared:
        role = REUSED.get(ep.name)
        return request(ep, acc, acc.standing(role) if role else account(ep, acc))

    return Case(LABELS.get(ep.name, ep.name), prepare, ep.hashes, TARGETS.get(ep.name))


def cases() -> list[Case]:
    """Every endpoint of the API contract (or those ``BENCH_ONLY`` names) and
    the two baselines."""
    every = [
        baseline("baseline A", "/bench/a/"),
        baseline("baseline B", "/bench/b/"),
        *(endpoint(ep) for ep in ENDPOINTS),
    ]
    if unknown := ONLY - {case.name for case in every}:
        raise SystemExit(f"BENCH_ONLY: no such endpoint: {', '.join(sorted(unknown))}")
    return [c for c in every if not ONLY or c.name in ONLY or c.name in BASELINES]


def call(client: APIClient, case: Case, acc: Accounts, record: bool) -> None:
    send = through(client, case.prepare(acc))
    wall, cpu = time.perf_counter(), time.process_time()
    response = send()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert response.status_code < 300, (
        case.name,
        response.status_code,
        response.content,
    )
    if record:
        case.cpu.append(cpu)
        case.wall.append(wall)


def run(selected: list[Case], rounds: int) -> dict[str, Case]:
    """Round-robin over ``selected`` so drift and noise hit every case alike."""
    acc = Accounts()  # its hash made with the current hasher
    client = APIClient()
    for n in range(WARMUP + rounds):
        for case in selected:
            call(client, case, acc, record=n >= WARMUP)
    return {case.name: case for case in selected}


def report(results: dict[str, Case], title: str) -> None:
    a = median_ms(results["baseline A"].cpu)
    b = median_ms(results["baseline B"].cpu)
    print(f"\n{title}")
    print(
        f"{'endpoint':26} {'CPU p50':>9} {'CPU p90':>9} {'wall p50':>9}"
        f" {'×A':>6} {'×B':>6}  target"
    )
    for name, case in results.items():
        cpu = median_ms(case.cpu)
        line = (
            f"{name:26} {cpu:7.2f}ms {percentile_ms(case.cpu, 90):7.2f}ms"
            f" {median_ms(case.wall):7.2f}ms {cpu / a:6.2f} {cpu / b:6.2f}"
        )
        if case.target and title.startswith("fast"):
            base, limit = case.target
            ratio = cpu / (a if base == "A" else b)
            verdict = "met" if ratio <= limit else f"NOT met (+{ratio / limit - 1:.0%})"
            line += f"  ≤ {limit}×{base}: {verdict}"
        print(line)


def main() -> None:
    settings.ROOT_URLCONF = __name__
    clear_url_caches()
    with throwaway_database():
        use_hasher(FAST_HASHER)
        fast = run(cases(), ROUNDS)
        report(fast, f"fast hasher (MD5), {ROUNDS} rounds, CPU time per request")
        use_hasher(DEFAULT_HASHER)
        slow = [c for c in cases() if c.hashes or c.name.startswith("baseline")]
        report(
            run(slow, SLOW_ROUNDS),
            f"Django's default hasher (PBKDF2), {SLOW_ROUNDS} rounds, "
            "the endpoints that hash a password",
        )
    print(
        f"\n{connection.vendor}, {get_user_model().__name__}, "
        f"ATOMIC_REQUESTS={settings.DATABASES['default'].get('ATOMIC_REQUESTS')}"
    )


if __name__ == "__main__":
    main()
