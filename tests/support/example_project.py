"""Run the example project in subprocesses, with its own settings and nothing of ours.

Shared by the tests of the example project, its OpenAPI schema and its demo.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .http import status_of
from .processes import REPO_ROOT, LoggedProcess, free_port, spawn
from .waiting import wait_until

__all__ = [
    "EXAMPLE_DIR",
    "settings_env_names",
    "example_env",
    "run",
    "explain",
    "example_server",
    "demo_env",
]

EXAMPLE_DIR = REPO_ROOT / "example_project"
SETTINGS_FILE = EXAMPLE_DIR / "config" / "settings.py"

# env("X", ...), env.bool("X", ...), env.db_url("X", ...): what settings.py reads.
_ENV_READ = re.compile(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"")


def settings_env_names() -> set[str]:
    return set(_ENV_READ.findall(SETTINGS_FILE.read_text()))


def example_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of an example-project subprocess, independent of ours.

    Every variable the settings read is dropped, and no .env file is read, so
    neither the caller's shell nor a developer's example_project/.env leaks in.
    """
    env = {k: v for k, v in os.environ.items() if k not in settings_env_names()}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        ENV_FILE="",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(overrides)
    return env


def demo_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The demo launcher's environment: no database, broker or cache configured
    (it chooses), local Redis and PostgreSQL pointed at closed ports, its files
    under ``tmp_path/demo``, a spare web port and a spare port for its SPA."""
    defaults = {
        "PORT": str(free_port()),
        "SPA_PORT": str(free_port()),
        "DEMO_DIR": str(tmp_path / "demo"),
        "DEMO_LOCAL_REDIS": f"redis://127.0.0.1:{free_port()}",
        "DEMO_LOCAL_POSTGRES": f"127.0.0.1:{free_port()}",
        "NO_COLOR": "1",
    }
    env = example_env(tmp_path, **{**defaults, **overrides})
    del env["DATABASE_URL"]
    return env


def run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` in the example project's directory, to completion."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


@contextmanager
def example_server(env: dict[str, str], timeout: float = 60) -> Iterator[str]:
    """``manage.py runserver`` on a spare port with ``env``; its base URL.

    Up once ``/api/schema/`` answers 2xx; stopped on exit; its output is shown
    when it does not come up.
    """
    port = free_port()
    log = Path(env.get("TMPDIR", "/tmp")) / f"example-server-{port}.log"
    base = f"http://127.0.0.1:{port}"
    with LoggedProcess(
        process=spawn(
            [
                sys.executable,
                "manage.py",
                "runserver",
                f"127.0.0.1:{port}",
                "--noreload",
            ],
            log_path=log,
            env=env,
            cwd=EXAMPLE_DIR,
        ),
        log_path=log,
        name="runserver",
    ) as server:
        wait_until(
            lambda: 200 <= (status_of(f"{base}/api/schema/") or 0) < 300,
            timeout=timeout,
            what=f"runserver answering at {base}/api/schema/",
            interval=0.2,
            check=server.assert_alive,
            details=server.log,
        )
        yield base
