"""Two web processes share one rate-limit budget (the Redis cache)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.celery_app import app as celery_app
from tests.support.processes import REPO_ROOT
from tests.support.workers import subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# One "web process": Django set up from the same settings, two requests from one
# client IP through the full request stack, the statuses printed as JSON.
WEB_PROCESS = """
import json, django
django.setup()
from django.test import Client
client = Client(REMOTE_ADDR="198.51.100.23")
statuses = [
    client.post(
        "/api/v1/auth/otp/request/",
        {"email": f"shared{n}@example.com"},
        content_type="application/json",
    ).status_code
    for n in range(2)
]
print(json.dumps(statuses))
"""


def run_web_process() -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS],
        cwd=REPO_ROOT,
        env=subprocess_env(broker_url=str(celery_app.conf.broker_url)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_two_processes_spend_one_budget() -> None:
    # otp/request allows 3 per 10 minutes per IP: two processes, four requests.
    first = run_web_process()
    second = run_web_process()

    assert first + second == [200, 200, 200, 429]
