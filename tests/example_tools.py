"""Run the example project in subprocesses, with its own settings and nothing of ours.

Shared by the tests of the example project, its OpenAPI schema and its demo.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_project"
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


def run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
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


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def example_server(env: dict[str, str], timeout: float = 60) -> Iterator[str]:
    """``manage.py runserver`` on a spare port with ``env``; its base URL.

    Stopped on exit; its output is shown when it does not come up.
    """
    port = free_port()
    log = Path(env.get("TMPDIR", "/tmp")) / f"example-server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "runserver",
                f"127.0.0.1:{port}",
                "--noreload",
            ],
            cwd=EXAMPLE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"runserver exited: {log.read_text(errors='replace')}")
            try:
                with opener.open(f"{base}/api/schema/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"runserver never answered: {log.read_text()}")
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class CollectedProcess:
    """A subprocess whose output (stderr merged in) is collected line by line by
    a reader thread, so a test can wait for a line without blocking on the pipe."""

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        new_session: bool = False,
    ) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=new_session,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)
