"""The example project: compose file, settings, Celery routing, demo broker check.

Everything runs in subprocesses with the example's own settings module, so this
suite's settings stay untouched. No Redis is needed: ``check --deploy`` does not
connect to the cache, and the demo is only run against a closed port.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import textwrap
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

from .example_tools import (
    EXAMPLE_DIR,
    example_env,
    explain,
    run,
    settings_env_names,
)

KINWISE_TASKS = [
    "kinwise_auth.tasks.deliver",
    "kinwise_auth.tasks.requeue_unsent",
    "kinwise_auth.tasks.purge_expired",
]


def production_env(tmp_path: Path) -> dict[str, str]:
    return example_env(
        tmp_path,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="example.com",
        FRONTEND_URL="https://app.example.com",
        CACHE_URL="redis://127.0.0.1:6379/1",
    )


def command_of(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


# ---------------------------------------------------------------------------
# compose.yaml, .env.example
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLE_DIR / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_declares_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"web", "worker", "beat", "redis", "postgres"} <= set(services)

    assert command_of(services["worker"]).startswith("celery -A config worker")
    assert command_of(services["beat"]).startswith("celery -A config beat")
    assert "gunicorn config.wsgi" in command_of(services["web"])

    for name in ("redis", "postgres"):
        assert "healthcheck" in services[name], name
    assert ".env" in str(services["postgres"]["env_file"])


def test_compose_builds_from_the_repository_root(compose: dict[str, Any]) -> None:
    for name in ("web", "worker", "beat"):
        build = compose["services"][name]["build"]
        assert (EXAMPLE_DIR / build["context"] / build["dockerfile"]).is_file(), name
        assert (EXAMPLE_DIR / build["context"] / "pyproject.toml").is_file(), name


def test_env_example_documents_every_variable() -> None:
    documented = set(
        re.findall(
            r"^#?\s*([A-Z][A-Z0-9_]*)=",
            (EXAMPLE_DIR / ".env.example").read_text(),
            flags=re.MULTILINE,
        )
    )
    read = settings_env_names()
    assert {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"} <= read
    assert read - documented == set()


# ---------------------------------------------------------------------------
# manage.py
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_no_missing_migrations(tmp_path: Path, debug: bool) -> None:
    # With DEBUG on, the demo app (dev mailbox) is installed too.
    env = production_env(tmp_path) if not debug else example_env(tmp_path)
    result = run(["manage.py", "makemigrations", "--check", "--dry-run"], env)
    assert result.returncode == 0, explain(result)


def test_deploy_checks_pass(tmp_path: Path) -> None:
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        production_env(tmp_path),
    )
    assert result.returncode == 0, explain(result)


def test_dev_secret_key_refused_without_debug(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr, explain(result)


# ---------------------------------------------------------------------------
# Settings as Django and Celery see them
# ---------------------------------------------------------------------------

PROBE = textwrap.dedent(
    """
    import json
    import sys

    import django

    django.setup()

    from django.conf import settings

    from config.celery import app

    app.loader.import_default_modules()  # what a worker does: autodiscovery
    tasks = sys.argv[1:]
    print(json.dumps({
        "routes": settings.CELERY_TASK_ROUTES,
        "queues": [queue.name for queue in settings.CELERY_TASK_QUEUES],
        "default_queue": settings.CELERY_TASK_DEFAULT_QUEUE,
        "resolved": {
            name: app.amqp.router.route({}, name)["queue"].name for name in tasks
        },
        "bindings": {
            queue.name: queue.routing_key for queue in app.amqp.queues.values()
        },
        "registered": sorted(n for n in app.tasks if n.startswith("kinwise_auth.")),
        "beat": sorted(entry["task"] for entry in app.conf.beat_schedule.values()),
        "cache": settings.CACHES["default"],
        "middleware": settings.MIDDLEWARE,
    }))
    """
)


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = run(
        ["-c", PROBE, *KINWISE_TASKS], example_env(tmp_path_factory.mktemp("probe"))
    )
    assert result.returncode == 0, explain(result)
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_kinwise_tasks_are_routed_to_a_declared_queue(probed: dict[str, Any]) -> None:
    queues = set(probed["queues"])
    assert probed["default_queue"] in queues
    for task in KINWISE_TASKS:
        matching = [
            route["queue"]
            for pattern, route in probed["routes"].items()
            if fnmatchcase(task, pattern)
        ]
        assert matching, f"no route for {task}"
        # Declared, so a plain `celery -A config worker` consumes it.
        assert matching[0] in queues, (task, matching[0], queues)
        assert probed["resolved"][task] == matching[0] == "auth"
    # Each queue under its own key: "auth" must not share the default's binding.
    assert probed["bindings"] == {"celery": "celery", "auth": "auth"}


def test_beat_schedules_registered_tasks(probed: dict[str, Any]) -> None:
    assert set(probed["beat"]) >= {
        "kinwise_auth.tasks.requeue_unsent",
        "kinwise_auth.tasks.purge_expired",
    }
    assert set(KINWISE_TASKS) <= set(probed["registered"])
    assert set(probed["beat"]) <= set(probed["registered"])


def test_cache_url_uses_djangos_redis_backend(probed: dict[str, Any]) -> None:
    cache = probed["cache"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://127.0.0.1:6379/1"


def test_cors_middleware_comes_before_common(probed: dict[str, Any]) -> None:
    middleware = probed["middleware"]
    assert middleware.index("corsheaders.middleware.CorsMiddleware") < (
        middleware.index("django.middleware.common.CommonMiddleware")
    )


# ---------------------------------------------------------------------------
# demo.py
# ---------------------------------------------------------------------------


def test_demo_refuses_to_start_without_its_broker(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now (it was bound, never listened, and closed).
    env = example_env(tmp_path, CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    result = run(["demo.py"], env, timeout=60)
    assert result.returncode == 1, explain(result)
    assert "not reachable" in result.stdout, explain(result)
    assert not (tmp_path / "db.sqlite3").exists()  # stopped before migrating
