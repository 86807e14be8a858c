"""Django management commands in subprocesses, the way a host's ``manage.py``
runs them, also several at the same moment."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .processes import REPO_ROOT, STOP_TIMEOUT, kill_process, piped
from .waiting import wait_until

__all__ = [
    "COMMAND_TIMEOUT",
    "CommandRun",
    "RunningCommand",
    "start_command",
    "run_command",
    "release_barrier",
    "republished",
]

COMMAND_TIMEOUT = 60.0

# The host's Celery app is imported at start-up (here tests.celery_app; a host does
# it in its project package), so kinwise_auth's shared tasks publish through it.
# Without the import they would bind to Celery's default app and its default broker
# (amqp on localhost: the shared RabbitMQ). With KINWISE_FAULT_BARRIER (a directory)
# the process sets up Django, connects to the database, says "ready-<pid>" there and
# waits for "go" (see :func:`release_barrier`), so several processes run the
# command at the same moment.
_MANAGE = """
import os, sys, time
from pathlib import Path
import django
django.setup()
import tests.celery_app
from django.core.management import execute_from_command_line
from django.db import connection
barrier = os.environ.get("KINWISE_FAULT_BARRIER")
if barrier:
    connection.ensure_connection()
    Path(barrier, f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + float(os.environ["KINWISE_FAULT_BARRIER_TIMEOUT"])
    while not Path(barrier, "go").exists():
        if time.monotonic() > deadline:
            sys.exit("kinwise-fault: the barrier was never released")
        time.sleep(0.001)
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""


@dataclass
class CommandRun:
    """A finished ``manage.py`` run: exit status, output, seconds it took."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


@dataclass
class RunningCommand:
    args: tuple[str, ...]
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)

    def wait(self, timeout: float = COMMAND_TIMEOUT) -> CommandRun:
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate(timeout=STOP_TIMEOUT)
            pytest.fail(
                f"manage.py {' '.join(self.args)} did not finish within {timeout:.0f}s;"
                f" stdout={stdout!r} stderr={stderr[-4000:]!r}"
            )
        return CommandRun(
            args=self.args,
            returncode=int(self.process.returncode),
            stdout=stdout,
            stderr=stderr,
            elapsed=time.monotonic() - self.started,
        )

    def kill(self) -> None:
        kill_process(self.process)


def start_command(
    env: Mapping[str, str], *args: str, barrier: Path | None = None
) -> RunningCommand:
    """Start ``manage.py <args>`` in a subprocess with ``env`` (from
    :func:`~.workers.subprocess_env`). With ``barrier``, it waits there for
    :func:`release_barrier` before running."""
    run_env = dict(env)
    if barrier is not None:
        run_env["KINWISE_FAULT_BARRIER"] = str(barrier)
        run_env["KINWISE_FAULT_BARRIER_TIMEOUT"] = str(COMMAND_TIMEOUT)
    process = piped([sys.executable, "-c", _MANAGE, *args], cwd=REPO_ROOT, env=run_env)
    return RunningCommand(args=args, process=process)


def run_command(
    env: Mapping[str, str], *args: str, timeout: float = COMMAND_TIMEOUT
) -> CommandRun:
    """Run ``manage.py <args>`` to completion (bounded); fail if it fails."""
    command = start_command(env, *args)
    try:
        result = command.wait(timeout)
    finally:
        command.kill()
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} exited with {result.returncode}: "
        f"stdout={result.stdout!r} stderr={result.stderr[-4000:]!r}"
    )
    return result


def release_barrier(
    barrier: Path, commands: list[RunningCommand], timeout: float = COMMAND_TIMEOUT
) -> None:
    """Once every command waits at ``barrier`` (bounded), let them all run at once."""

    def none_exited() -> None:
        for command in commands:
            if command.process.poll() is not None:
                result = command.wait()
                pytest.fail(
                    f"manage.py {' '.join(command.args)} exited with "
                    f"{result.returncode} before the barrier: {result.stderr[-4000:]}"
                )

    wait_until(
        lambda: len(list(barrier.glob("ready-*"))) >= len(commands),
        timeout=timeout,
        what="every command ready at the barrier",
        interval=0.02,
        check=none_exited,
    )
    (barrier / "go").touch()


_REPUBLISHED = re.compile(r"Re-published (\d+) outbox email")


def republished(result: CommandRun) -> int:
    """How many rows a ``kinwise_auth_redrive`` run says it re-published."""
    match = _REPUBLISHED.search(result.stdout)
    assert match, f"unexpected re-drive output: {result.stdout!r} {result.stderr!r}"
    return int(match.group(1))
