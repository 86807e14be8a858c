"""The example project: compose file, settings, Celery routing, the demo launcher.

Everything runs in subprocesses with the example's own settings module, so this
suite's settings stay untouched. No Redis is needed: ``check --deploy`` does not
connect to the cache, and the demo is only run against a closed port.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request
from contextlib import closing
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.example_project import (
    EXAMPLE_DIR,
    demo_env,
    example_env,
    explain,
    run,
    settings_env_names,
)
from tests.support.http import opener
from tests.support.processes import CollectedProcess, free_port
from tests.support.waiting import wait_until

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
# run_demo.py, the launcher `make demo` runs
# ---------------------------------------------------------------------------

LAUNCHER = "run_demo.py"
SUPERUSER_LINE = re.compile(r"  Superuser (\S+@\S+)  password (\S+)   \((.+)\)")


def sign_in_to_admin(base: str, username: str, password: str) -> str:
    """Sign in through the admin's form; the title of the page it ends on."""
    browser = opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with browser.open(f"{base}/admin/login/?next=/admin/", timeout=10) as answer:
        form = answer.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token is not None, form[:2000]
    fields = {
        "csrfmiddlewaretoken": token[1],
        "username": username,
        "password": password,
        "next": "/admin/",
    }
    data = urllib.parse.urlencode(fields).encode()
    with browser.open(f"{base}/admin/login/?next=/admin/", data, timeout=10) as answer:
        title = re.search(r"<title>(.*?)</title>", answer.read().decode(), re.S)
    return title[1].strip() if title else ""


class DemoRun(CollectedProcess):
    """One run of the launcher: started, waited for until web, worker and beat
    are up, then stopped with Ctrl-C (SIGINT, as a terminal sends it)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base = f"http://127.0.0.1:{env['PORT']}"
        super().__init__([sys.executable, LAUNCHER], cwd=EXAMPLE_DIR, env=env)

    def wait_until_up(self, timeout: float = 120) -> None:
        up = ("web    | Quit the server", "worker | ", " ready.", "beat   | ")

        def running() -> None:
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(f"the demo did not come up:\n{self.output[-6000:]}")

        wait_until(
            lambda: all(part in self.output for part in up),
            timeout=timeout,
            what="the demo up: web, worker and beat",
            interval=0.2,
            check=running,
            details=lambda: self.output[-6000:],
        )

    def stop(self) -> int:
        return self.interrupt(timeout=60)


@pytest.fixture(scope="module")
def demo_twice(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two starts of the launcher on one demo directory, with nothing reachable;
    during the first, the printed superuser signs in to the admin."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env = demo_env(tmp_path)
    runs, statuses, admin_title = [], [], ""
    for start in range(2):
        run_ = DemoRun(env)
        try:
            run_.wait_until_up()
            found = SUPERUSER_LINE.search(run_.output)
            if start == 0 and found:
                admin_title = sign_in_to_admin(run_.base, found[1], found[2])
        finally:
            statuses.append(run_.stop())
        runs.append(run_.output)
    return {
        "env": env,
        "outputs": runs,
        "statuses": statuses,
        "admin_title": admin_title,
        "database": tmp_path / "demo" / "db.sqlite3",
    }


def superusers(database: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(database)) as connection:
        rows = connection.execute(
            "SELECT username, email FROM auth_user WHERE is_superuser"
        )
        return list(rows)


def test_demo_falls_back_and_names_what_did_not_answer(
    demo_twice: dict[str, Any],
) -> None:
    env, out = demo_twice["env"], demo_twice["outputs"][0]
    redis_url, postgres = env["DEMO_LOCAL_REDIS"], env["DEMO_LOCAL_POSTGRES"]
    assert f"(broker and cache embedded: Redis on {redis_url} is not reachable: " in (
        out
    ), out
    assert f"(database SQLite: PostgreSQL on {postgres} is not reachable: " in out, out
    assert "Broker    filesystem://" in out, out
    assert f"Database  SQLite {demo_twice['database']}" in out, out
    assert f"Cache     FileBasedCache {Path(env['DEMO_DIR']) / 'cache'}" in out, out


def test_demo_runs_web_worker_and_beat_and_stops_them_on_ctrl_c(
    demo_twice: dict[str, Any],
) -> None:
    assert demo_twice["statuses"] == [0, 0], demo_twice["outputs"]
    for out in demo_twice["outputs"]:
        assert f"Demo      http://127.0.0.1:{demo_twice['env']['PORT']}/" in out, out
        assert out.rstrip().endswith("demo: stopped."), out[-3000:]
        assert "did not stop in time" not in out, out


def test_demo_creates_its_superuser_on_first_start_only(
    demo_twice: dict[str, Any],
) -> None:
    first, second = (SUPERUSER_LINE.search(out) for out in demo_twice["outputs"])
    assert first is not None, demo_twice["outputs"][0]
    assert second is not None, demo_twice["outputs"][1]
    assert first[1] == "admin@example.com"
    assert first[3] == "created now"
    # The second start finds it, does not create another, shows the same password.
    assert (second[1], second[2]) == (first[1], first[2])
    assert second[3] == "created on the first start"
    assert superusers(demo_twice["database"]) == [("admin", "admin@example.com")]


def test_demo_superuser_signs_in_to_the_admin(demo_twice: dict[str, Any]) -> None:
    # Its email and the printed password, typed into the admin's sign-in form.
    assert "Site administration" in demo_twice["admin_title"], demo_twice


def test_demo_creates_no_superuser_with_debug_off(tmp_path: Path) -> None:
    env = demo_env(tmp_path, DEBUG="false", SECRET_KEY=secrets.token_urlsafe(64))
    run_ = DemoRun(env)
    try:
        run_.wait_until_up()
    finally:
        status = run_.stop()
    assert status == 0, run_.output
    assert "  Superuser none: DEBUG is off" in run_.output, run_.output
    assert superusers(tmp_path / "demo" / "db.sqlite3") == []
    assert not (tmp_path / "demo" / "superuser-password").exists()


def test_demo_refuses_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = demo_env(tmp_path, PORT=str(port))
        result = run([LAUNCHER], env, timeout=60)
    assert result.returncode != 0, explain(result)
    assert f"port {port} is taken: run `make demo PORT=" in result.stdout, explain(
        result
    )
    # Nothing chosen, created or started.
    assert not (tmp_path / "demo").exists(), explain(result)
    assert "Operations to perform" not in result.stdout, explain(result)


def test_make_demo_passes_port_through() -> None:
    # make runs this very suite (make test): it is always there.
    result = subprocess.run(
        ["make", "-n", "demo", "PORT=8123"],
        cwd=EXAMPLE_DIR.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, explain(result)
    assert "PORT='8123' ../.venv/bin/python run_demo.py" in result.stdout, explain(
        result
    )


def test_demo_refuses_to_start_without_its_broker(tmp_path: Path) -> None:
    # A configured broker that does not answer stops the demo: no fallback.
    broker = f"redis://127.0.0.1:{free_port()}/0"
    env = example_env(
        tmp_path,
        CELERY_BROKER_URL=broker,
        PORT=str(free_port()),
        DEMO_LOCAL_REDIS=f"redis://127.0.0.1:{free_port()}",
    )
    result = run([LAUNCHER], env, timeout=60)
    assert result.returncode == 1, explain(result)
    assert f"the Celery broker is not reachable: {broker}" in result.stdout, explain(
        result
    )
    assert not (tmp_path / "db.sqlite3").exists()  # stopped before migrating


# ---------------------------------------------------------------------------
# The admin's sign-in: rate-limited (config/admin_login.py)
# ---------------------------------------------------------------------------

ADMIN_LOGIN_PROBE = textwrap.dedent(
    """
    import json
    import sys
    import types
    import time
    from unittest import mock

    import django

    django.setup()

    import django_ratelimit.core
    from django.contrib.auth import get_user_model, user_logged_in, user_login_failed
    from django.core.cache import cache
    from django.core.management import call_command
    from django.test import Client

    from kinwise_auth.conf import auth_settings

    password = sys.argv[1]
    call_command("migrate", verbosity=0)
    get_user_model().objects.create_superuser("admin", "admin@example.com", password)

    checked = []  # one entry per password check, failed or not
    user_login_failed.connect(lambda **kw: checked.append("failed"), weak=False)
    user_logged_in.connect(lambda **kw: checked.append("signed in"), weak=False)


    def fresh_client():
        client = Client(enforce_csrf_checks=True)
        assert client.get("/admin/login/").status_code == 200
        return client


    def form(client):
        return client.get("/admin/login/", REMOTE_ADDR="198.51.100.1").status_code


    def attempt(client, ip, username, secret):
        before = len(checked)
        response = client.post(
            "/admin/login/?next=/admin/",
            {
                "username": username,
                "password": secret,
                "next": "/admin/",
                "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
            },
            REMOTE_ADDR=ip,
        )
        return {
            "status": response.status_code,
            "retry_after": response.get("Retry-After"),
            "content_type": response.get("Content-Type"),
            "body": response.content.decode()[:300],
            "location": response.get("Location"),
            "checked": checked[before:],
            "signed_in": "_auth_user_id" in client.session,
        }


    def index(client):
        response = client.get("/admin/", REMOTE_ADDR="198.51.100.1")
        return {"status": response.status_code, "location": response.get("Location")}


    # Fixed windows (django-ratelimit) would restart their count if one ended
    # mid-run: the limiter's clock stands still here.
    now = time.time()
    clock = types.SimpleNamespace(time=lambda: now)
    out = {
        "rates": {
            kind: auth_settings.rate("admin_login", kind) for kind in ("ip", "email")
        }
    }
    with mock.patch.object(django_ratelimit.core, "time", clock):
        cache.clear()
        client = fresh_client()
        out["control"] = {
            "attempt": attempt(client, "192.0.2.1", "admin", password),
            "index": index(client),
        }

        # 30 wrong passwords, then the right one, from one IP.
        cache.clear()
        client = fresh_client()
        wrong = [attempt(client, "192.0.2.2", "admin", f"wrong-{n}") for n in range(30)]
        out["one_ip"] = {
            "wrong": wrong,
            "right": attempt(client, "192.0.2.2", "admin", password),
            "forms": [form(client) for _ in range(3)],
            "index": index(client),
        }

        # One account from 30 IPs, spelt as the form cleans it to one username.
        cache.clear()
        client = fresh_client()
        spellings = ["admin", " admin ", "\\uff41\\uff44\\uff4d\\uff49\\uff4e"]
        wrong = [
            attempt(client, f"203.0.113.{n}", spellings[n % 3], f"wrong-{n}")
            for n in range(30)
        ]
        out["one_account"] = {
            "wrong": wrong,
            "right": attempt(client, "203.0.113.200", "admin", password),
            "index": index(client),
        }

        # Many accounts from one IP.
        cache.clear()
        client = fresh_client()
        wrong = [
            attempt(client, "192.0.2.3", f"someone{n}", "wrong") for n in range(15)
        ]
        out["many_accounts"] = {
            "wrong": wrong,
            "right": attempt(client, "192.0.2.3", "admin", password),
            "index": index(client),
        }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def admin_login(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example's /admin/login/ under attack, through the full middleware stack
    (CSRF enforced), with a one-process cache."""
    env = example_env(
        tmp_path_factory.mktemp("admin_login"),
        ALLOWED_HOSTS="testserver",
        CACHE_URL="locmemcache://",
    )
    result = run(["-c", ADMIN_LOGIN_PROBE, secrets.token_urlsafe(16)], env)
    assert result.returncode == 0, explain(result)
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def budget(rate: str) -> int:
    return int(rate.partition("/")[0])


def assert_processed(answer: dict[str, Any]) -> None:
    """A wrong password checked: the form again, with its error."""
    assert answer["status"] == 200, answer
    assert answer["checked"] == ["failed"], answer
    assert not answer["signed_in"], answer


def assert_refused(answer: dict[str, Any]) -> None:
    """429, Retry-After, a short plain message, and no password checked."""
    assert answer["status"] == 429, answer
    assert 0 < int(answer["retry_after"]) <= 600, answer
    assert answer["content_type"].startswith("text/plain"), answer
    assert "Too many sign-in attempts" in answer["body"], answer
    assert len(answer["body"]) < 100, answer
    assert answer["checked"] == [], answer
    assert not answer["signed_in"], answer
    assert answer["location"] is None, answer


def assert_not_signed_in(index: dict[str, Any]) -> None:
    assert index["status"] == 302, index
    assert index["location"].startswith("/admin/login/"), index


def test_admin_login_rates_are_configured(admin_login: dict[str, Any]) -> None:
    assert admin_login["rates"] == {"ip": "10/m", "email": "5/10m"}


def test_admin_login_accepts_the_right_password_within_budget(
    admin_login: dict[str, Any],
) -> None:
    # Without this, "not signed in" below could pass for another reason.
    answer = admin_login["control"]["attempt"]
    assert answer["status"] == 302, answer
    assert answer["location"] == "/admin/", answer
    assert answer["checked"] == ["signed in"], answer
    assert answer["signed_in"], answer
    assert admin_login["control"]["index"]["status"] == 200


def test_admin_login_is_limited_per_ip_and_account(
    admin_login: dict[str, Any],
) -> None:
    rates = admin_login["rates"]
    allowed = min(budget(rates["ip"]), budget(rates["email"]))
    scenario = admin_login["one_ip"]
    wrong = scenario["wrong"]
    for answer in wrong[:allowed]:
        assert_processed(answer)
    for answer in wrong[allowed:]:
        assert_refused(answer)
    # The right password on the 31st try is refused unread: no session.
    assert_refused(scenario["right"])
    assert_not_signed_in(scenario["index"])
    # Showing the form is never counted nor refused.
    assert scenario["forms"] == [200, 200, 200]


def test_admin_login_account_budget_holds_across_ips(
    admin_login: dict[str, Any],
) -> None:
    allowed = budget(admin_login["rates"]["email"])
    scenario = admin_login["one_account"]
    wrong = scenario["wrong"]
    for answer in wrong[:allowed]:
        assert_processed(answer)
    for answer in wrong[allowed:]:
        assert_refused(answer)
    assert_refused(scenario["right"])
    assert_not_signed_in(scenario["index"])


def test_admin_login_ip_budget_holds_across_accounts(
    admin_login: dict[str, Any],
) -> None:
    allowed = budget(admin_login["rates"]["ip"])
    scenario = admin_login["many_accounts"]
    wrong = scenario["wrong"]
    for answer in wrong[:allowed]:
        assert_processed(answer)
    for answer in wrong[allowed:]:
        assert_refused(answer)
    assert_refused(scenario["right"])
    assert_not_signed_in(scenario["index"])
