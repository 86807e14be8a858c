"""Subprocesses a test starts: each in a process group of its own, stopped (or
killed) as one, its output in a log file or collected line by line.

Every wait here is bounded, and whatever starts a process also stops it, also
when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest

from .waiting import wait_until

__all__ = [
    "REPO_ROOT",
    "STOP_TIMEOUT",
    "free_port",
    "stop_group",
    "kill_group",
    "kill_process",
    "group_members",
    "spawn",
    "piped",
    "LoggedProcess",
    "CollectedProcess",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 10.0  # seconds a process gets to stop before SIGKILL, or to be reaped


def free_port() -> int:
    """A loopback TCP port nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``process``'s group (SIGCONT first, in case it was paused), then
    SIGKILL if it lingers. ``process`` was started with ``start_new_session``."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL ``process``'s whole group and reap it (bounded)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait(timeout=STOP_TIMEOUT)


def kill_process(process: subprocess.Popen[Any]) -> None:
    """SIGKILL ``process`` alone (not its group) and reap it (bounded)."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """``(pid, state)`` of every process in group ``pgid``, zombies excepted."""
    members: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append((int(entry.name), state))
    return members


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session (process group) of its own, stdout and stderr
    to ``log_path`` (appended to with ``append``, else written afresh)."""
    with log_path.open("ab" if append else "wb") as log_file:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def piped(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stderr: int = subprocess.PIPE,
    new_session: bool = False,
) -> subprocess.Popen[str]:
    """Start ``argv`` with no input and its output piped as text (stderr on a pipe
    of its own, or ``subprocess.STDOUT`` to merge it)."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=new_session,
    )


@dataclass
class LoggedProcess:
    """A subprocess from :func:`spawn`, named ``name`` in failure messages; as a
    context manager, stopped on exit."""

    process: subprocess.Popen[bytes]
    log_path: Path
    name: str

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        text = "\n".join(self.log().splitlines()[-lines:])
        return f"--- {self.name} log ({self.log_path}) ---\n{text}"

    def assert_alive(self) -> None:
        """Fail the test, with the end of the log, if the process has exited."""
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"{self.name} exited with {code}\n{self.log_tail()}")

    def processes(self) -> list[tuple[int, str]]:
        """The live (non-zombie) processes of its group: e.g. main and pool."""
        return group_members(self.process.pid)  # start_new_session: the leader's

    def stop(self) -> None:
        """A warm shutdown of the whole group; SIGKILL if it lingers."""
        stop_group(self.process)

    def kill(self) -> None:
        """SIGKILL the whole group (also when the leader is gone already), reap
        the leader, and wait until every member is gone (a child is reparented
        and reaped by init)."""
        with suppress(ProcessLookupError):  # already gone, all of it
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
        wait_until(
            lambda: not self.processes(),
            timeout=STOP_TIMEOUT,
            what=f"every process of {self.name} gone after SIGKILL",
            details=lambda: f"left: {self.processes()}",
        )


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
        self.new_session = new_session
        self.process = piped(
            argv, cwd=cwd, env=env, stderr=subprocess.STDOUT, new_session=new_session
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

    def interrupt(self, timeout: float) -> int:
        """Ctrl-C as a terminal sends it (SIGINT, to the whole group of a process
        with a session of its own); its exit status, once its output is read."""
        if self.process.poll() is None:
            if self.new_session:
                os.killpg(self.process.pid, signal.SIGINT)
            else:
                self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.reader.join(timeout=5)

    def kill(self) -> None:
        """SIGKILL it (its whole group, with a session of its own) and reap it."""
        (kill_group if self.new_session else kill_process)(self.process)
