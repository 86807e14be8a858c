"""The quickstart, executed: docs/quickstart.md's own steps build and run a project.

The test reads :data:`QUICKSTART_DOC` (``docs/quickstart.md``; the environment
variable ``KINWISE_QUICKSTART_DOC`` points it at another copy) and executes every
code block that follows a marker, an HTML comment mkdocs does not render::

    <!-- quickstart: install -->                         pip install, from a wheel
    <!-- quickstart: append yourproject/settings.py -->  appended to that file
    <!-- quickstart: write yourproject/celery.py -->     written as that file
    <!-- quickstart: run -->                             each ``$`` command, in turn
    <!-- quickstart: start -->                           each ``$`` command, kept up
    <!-- quickstart: call -->                            the ``curl`` call, over HTTP
    <!-- quickstart: email -->                           the email shown, awaited

Paths are relative to the project's root (where ``manage.py`` is). Blocks without
a marker are prose to this test. The steps run in the doc's order:

1. A wheel is built from a copy of this checkout (a copy, so no ``build/`` or
   ``*.egg-info`` is written into the checkout, and no stale ``build/lib`` slips
   into the wheel), in a fresh virtualenv made by ``sys.executable`` (the tox env's
   Python). The ``install`` command runs there with ``kinwise-auth`` replaced by
   the wheel's path, extras kept: ``pip install "<wheel>[redis]"``. The venv is
   shared by the module's tests.
2. ``django-admin startproject yourproject`` makes the project, the file steps edit
   it, and the ``run`` commands (``manage.py check`` and ``migrate``) must exit 0.
   Every command must resolve to the venv's ``bin``; none inherits this process's
   ``PYTHONPATH``, ``DJANGO_SETTINGS_MODULE`` or ``KINWISE_TEST_*``.
3. The ``start`` commands run ``runserver``, a real ``celery worker`` and ``celery
   beat``. Each ``call`` then replays its ``curl`` with urllib: it must answer 2xx,
   and the JSON shown under it must match the answer (a string the doc shortens
   with ``...`` matches any value it begins). Each ``email`` step waits for the
   message with the shown ``Subject``/``To`` at the SMTP sink, compares the shown
   headers and body lines, and takes the real link token or code where the sample
   shows one, so later calls send the real secret instead of the doc's. The
   answer's string fields become the shell variables the doc uses (``$ACCESS``,
   ``$REFRESH``). The doc marks every call of steps 7 to 16; they must include
   register, verify-email, otp/request, otp/verify and me, in that order. All
   started processes must still run at the end.

The only changes to the doc's project are these lines, appended to
``yourproject/settings.py`` after the doc's file steps and before its commands:

- ``CELERY_BROKER_URL`` and ``CACHES["default"]["LOCATION"]``: the doc's db 0 and 1,
  on a ``redis-server`` of this test's own on a spare port instead of the shared
  one on 6379, where other suites (and other integration tests' workers, on the
  ``celery`` queue) would take the project's tasks or share its rate-limit counters.
- ``EMAIL_BACKEND``/``EMAIL_HOST``/``EMAIL_PORT``: SMTP to an aiosmtpd sink in this
  process instead of the console backend, so the test reads the emails.

``runserver`` gets an address (a spare port instead of 8000), and each ``curl``
URL goes to that port. The quickstart project uses SQLite, as ``startproject``
makes it: no PostgreSQL is needed.

:func:`test_quickstart_check_stops_a_missing_step` proves the test notices a
missing step: without the ``__init__.py`` import of the Celery app
(``kinwise_auth.E010``) or the ``EmailBackend`` line (``kinwise_auth.E011``), the
doc's ``manage.py check`` fails. A missing ``redis-server``, an unusable ``venv``
or an unreachable package index skips the module with the reason, or fails it
when ``CI`` is "true". It runs in the ``tests.settings`` pass of the integration
env only: the quickstart project does not use the suite's settings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.brokers import private_redis
from tests.support.gate import unavailable
from tests.support.http import OPENER, status_of
from tests.support.processes import REPO_ROOT, LoggedProcess, free_port, spawn
from tests.support.smtp import SMTPServer, running_smtp
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

QUICKSTART_DOC = Path(
    os.environ.get("KINWISE_QUICKSTART_DOC") or REPO_ROOT / "docs" / "quickstart.md"
)
PROJECT = "yourproject"
PACKAGE_NAME = re.compile(r"^kinwise[-_.]auth(?P<extras>\[[^\]]*\])?$", re.IGNORECASE)
# The calls the walk must make, in this order (URL paths end with these).
REQUIRED_CALLS = ("register/", "verify-email/", "otp/request/", "otp/verify/", "me/")

INSTALL_TIMEOUT = 300.0  # building the wheel, or installing it with its deps
COMMAND_TIMEOUT = 120.0  # startproject, check, migrate
READY_TIMEOUT = 60.0  # runserver answering, the worker "ready."
HTTP_TIMEOUT = 15.0

# What the built wheel's source copy leaves out: VCS data, environments, caches
# and build output (a stale build/lib would otherwise end up in the wheel).
SOURCE_IGNORE = shutil.ignore_patterns(
    ".git",
    ".tox",
    ".venv",
    ".tools",
    ".demo",
    ".hypothesis",
    ".*_cache",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "site",
    "artifacts",
    "node_modules",
)
# The variables a subprocess keeps from this process; everything else (PYTHONPATH,
# DJANGO_SETTINGS_MODULE, KINWISE_TEST_*, VIRTUAL_ENV...) stays out.
ENV_KEEP = {"HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "SSL_CERT_FILE"}
ENV_KEEP_PREFIXES = ("LC_", "PIP_")
PROXY_VARIABLES = {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}

OVERRIDES = """

# --- Appended by tests/integration/test_quickstart.py after the quickstart's own
# steps: the test's private Redis, and an SMTP sink instead of the console.
CELERY_BROKER_URL = "redis://127.0.0.1:{redis_port}/0"
CACHES["default"]["LOCATION"] = "redis://127.0.0.1:{redis_port}/1"
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = {smtp_port}
"""

MARKER = re.compile(
    r"^<!--\s*quickstart:\s*(?P<action>[a-z]+)(?:\s+(?P<target>\S+))?\s*-->$"
)
FENCE = re.compile(r"^(?P<fence>`{3,})[\w-]*\s*$")
FILE_ACTIONS = {"append", "write"}
# The phases, in the order the doc must use them.
PHASES = {"install": 0, "append": 1, "write": 1, "run": 2, "start": 3}
WALK_PHASE = 4  # "call" and "email"
TOKEN_IN_LINK = re.compile(r"token=([A-Za-z0-9_-]{20,})")
CODE_LINE = re.compile(r"(\s*)(\d{6})")
VARIABLE = re.compile(r"\$([A-Z_][A-Z0-9_]*)")
WORKER_READY = re.compile(r"@\S+ ready\.")


class StepFailed(AssertionError):
    """A quickstart step did not do what the doc says."""

    def __init__(self, where: str, message: str, output: str = "") -> None:
        self.where = where
        self.output = output
        tail = f"\n--- output ---\n{output[-6000:]}" if output else ""
        super().__init__(f"{where}: {message}{tail}")


# --- reading the doc ----------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A marked code block of the doc."""

    action: str
    target: str | None
    body: str
    line: int

    @property
    def where(self) -> str:
        label = f"{self.action} {self.target}" if self.target else self.action
        return f"{QUICKSTART_DOC.name}:{self.line} ({label})"


def parse_steps(text: str) -> list[Step]:
    """The marked blocks of ``text``, in order; a malformed marker is an error."""
    lines = text.splitlines()
    steps: list[Step] = []
    index = 0
    while index < len(lines):
        marker = MARKER.match(lines[index].strip())
        index += 1
        if marker is None:
            continue
        line = index
        action, target = marker["action"], marker["target"]
        if action not in {*PHASES, "call", "email"}:
            raise StepFailed(f"line {line}", f"unknown quickstart action {action!r}")
        if (action in FILE_ACTIONS) != (target is not None):
            raise StepFailed(f"line {line}", f"{action!r} with target {target!r}")
        while index < len(lines) and not lines[index].strip():
            index += 1
        fence = FENCE.match(lines[index]) if index < len(lines) else None
        if fence is None:
            raise StepFailed(f"line {line}", "the marker is not followed by a block")
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence["fence"]:
            end += 1
        if end == len(lines):
            raise StepFailed(f"line {line}", "the block is never closed")
        body = "\n".join(lines[index + 1 : end])
        steps.append(Step(action=action, target=target, body=body, line=line))
        index = end + 1
    return steps


def check_order(steps: list[Step]) -> None:
    """install, file edits, run, start, then the calls and emails."""
    phase = 0
    for step in steps:
        step_phase = PHASES.get(step.action, WALK_PHASE)
        if step_phase < phase:
            raise StepFailed(
                step.where,
                "out of order: this test runs install, "
                "file steps, run, start, then calls and emails",
            )
        phase = step_phase
    for action in ("install", "run", "start", "call", "email"):
        if not any(step.action == action for step in steps):
            raise StepFailed(QUICKSTART_DOC.name, f"no '{action}' step")


@dataclass(frozen=True)
class Command:
    """One ``$`` command of a console block, continuations joined."""

    text: str
    argv: list[str]
    output: list[str]


def console_commands(step: Step) -> list[Command]:
    """The ``$`` commands of ``step``, each with the lines shown under it.

    A command goes on past a line ending in a backslash, or inside an open quote.
    """
    commands: list[Command] = []
    pending: str | None = None
    for line in step.body.splitlines():
        if pending is None and not line.startswith("$ "):
            if not commands:
                raise StepFailed(step.where, f"output before any command: {line!r}")
            commands[-1].output.append(line)
            continue
        text = line[2:] if pending is None else f"{pending}{line}"
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        try:
            argv = shlex.split(text)
        except ValueError:  # an open quote: the next line belongs to it
            pending = text + "\n"
            continue
        pending = None
        commands.append(Command(text=text, argv=argv, output=[]))
    if pending is not None:
        raise StepFailed(step.where, f"unfinished command {pending!r}")
    if not commands:
        raise StepFailed(step.where, "no $ command")
    return commands


# --- the virtualenv -----------------------------------------------------------


@dataclass(frozen=True)
class Venv:
    path: Path
    env: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def resolve(self, argv: list[str], where: str) -> list[str]:
        """``argv`` with its program found in the venv's ``bin``, or an error."""
        program = shutil.which(argv[0], path=self.env["PATH"])
        if program is None or Path(program).parent != self.bin:
            raise StepFailed(where, f"{argv[0]!r} is not a program of the venv")
        return [program, *argv[1:]]

    def run(
        self,
        argv: list[str],
        *,
        cwd: Path,
        where: str,
        timeout: float = COMMAND_TIMEOUT,
    ) -> str:
        """Run ``argv``; its output, or :class:`StepFailed` if it does not exit 0."""
        try:
            done = subprocess.run(
                self.resolve(argv, where),
                cwd=cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode("utf-8", "replace")
            raise StepFailed(where, f"{shlex.join(argv)} timed out", output) from exc
        output = done.stdout.decode("utf-8", "replace")
        if done.returncode != 0:
            raise StepFailed(
                where, f"{shlex.join(argv)} exited with {done.returncode}", output
            )
        return output


def clean_env(venv_dir: Path) -> dict[str, str]:
    """This process's environment without what would leak the suite into the venv."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name in ENV_KEEP
        or name.startswith(ENV_KEEP_PREFIXES)
        or name.lower() in PROXY_VARIABLES
    }
    env["PATH"] = os.pathsep.join(
        [str(venv_dir / "bin"), os.environ.get("PATH", os.defpath)]
    )
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _index_problem() -> str | None:
    """Why the package index cannot be reached, or None if it answers."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/pip/", timeout=10.0):
            return None
    except (OSError, urllib.error.URLError) as exc:
        return f"the package index {index} is unreachable: {exc}"


def _install(venv: Venv, argv: list[str], where: str) -> str:
    """``venv.run`` for a command that needs the package index."""
    try:
        return venv.run(argv, cwd=venv.path, where=where, timeout=INSTALL_TIMEOUT)
    except StepFailed:
        problem = _index_problem()
        if problem is not None:
            unavailable("quickstart test", problem)
        raise


@pytest.fixture(scope="module")
def quickstart_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv holding the wheel of this checkout, installed as step 1 says."""
    steps = parse_steps(QUICKSTART_DOC.read_text(encoding="utf-8"))
    check_order(steps)
    root = tmp_path_factory.mktemp("quickstart-venv")
    venv_dir = root / "venv"
    created = subprocess.run(
        [sys.executable, "-m", "venv", str(venv_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if created.returncode != 0:
        unavailable(
            "quickstart test",
            f"{sys.executable} -m venv failed: {created.stdout.decode()[-2000:]}",
        )
    venv = Venv(path=venv_dir, env=clean_env(venv_dir))

    # The venv's own pip builds the wheel: a tox-uv env may have no pip.
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=SOURCE_IGNORE, symlinks=True)
    wheels = root / "wheels"
    _install(
        venv,
        ["python", "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(source)],
        where="building the wheel",
    )
    (wheel,) = wheels.glob("kinwise_auth-*.whl")

    (install,) = [step for step in steps if step.action == "install"]
    for command in console_commands(install):
        argv = list(command.argv)
        names = [i for i, arg in enumerate(argv) if PACKAGE_NAME.match(arg)]
        if len(names) != 1 or argv[:2] != ["pip", "install"]:
            raise StepFailed(
                install.where, f"not a pip install of kinwise-auth: {argv}"
            )
        match = PACKAGE_NAME.match(argv[names[0]])
        assert match is not None
        argv[names[0]] = f"{wheel}{match['extras'] or ''}"
        _install(venv, argv, where=install.where)

    # The package comes from the wheel, not from this checkout.
    located = venv.run(
        ["python", "-c", "import kinwise_auth; print(kinwise_auth.__file__)"],
        cwd=root,
        where="importing kinwise_auth",
    )
    assert Path(located.strip()).is_relative_to(venv_dir), located
    return venv


# --- the project --------------------------------------------------------------


def build_project(
    venv: Venv, steps: list[Step], root: Path, *, overrides: str = ""
) -> Path:
    """``startproject``, the doc's file steps, ``overrides``, then its commands."""
    site = root / "site"
    site.mkdir()
    venv.run(
        ["django-admin", "startproject", PROJECT, str(site)],
        cwd=root,
        where="django-admin startproject",
    )
    settings_file = site / PROJECT / "settings.py"
    appended = False
    for step in steps:
        if step.action in FILE_ACTIONS:
            assert step.target is not None
            target = (site / step.target).resolve()
            if not target.is_relative_to(site.resolve()):
                raise StepFailed(step.where, "the file is outside the project")
            if step.action == "write":
                target.write_text(step.body + "\n", encoding="utf-8")
            else:
                with target.open("a", encoding="utf-8") as file:
                    file.write("\n" + step.body + "\n")
        elif step.action == "run":
            if not appended:
                with settings_file.open("a", encoding="utf-8") as file:
                    file.write(overrides)
                appended = True
            for command in console_commands(step):
                venv.run(command.argv, cwd=site, where=f"{step.where} $ {command.text}")
    return site


@dataclass
class Background(LoggedProcess):
    """A long-running command of the ``start`` step, its output in a file."""

    def assert_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise StepFailed(self.name, f"exited with {code}", self.log())


@dataclass
class Running:
    """The started commands and the web server's origin."""

    origin: str
    processes: list[Background] = field(default_factory=list)

    def assert_alive(self) -> None:
        for background in self.processes:
            background.assert_alive()

    def logs(self) -> str:
        return "\n".join(f"--- {b.name} ---\n{b.log()[-6000:]}" for b in self.processes)


def _wait(ready: Callable[[], bool], running: Running, background: Background) -> None:
    wait_until(
        ready,
        timeout=READY_TIMEOUT,
        what=f"{background.name} ready",
        interval=0.2,
        check=running.assert_alive,
        details=background.log,
    )


def _worker_ready(worker: Background) -> bool:
    return WORKER_READY.search(worker.log()) is not None


def _answers(url: str) -> bool:
    """Any HTTP answer: the server is up."""
    return status_of(url) is not None


@contextmanager
def start(venv: Venv, step: Step, site: Path, logs: Path) -> Iterator[Running]:
    """Run the ``start`` commands until the server answers and the worker is ready.

    ``runserver`` gets a spare port; every process is stopped on exit.
    """
    port = free_port()
    running = Running(origin=f"http://127.0.0.1:{port}")
    roles: list[str] = []
    try:
        for number, command in enumerate(console_commands(step)):
            argv = list(command.argv)
            if "runserver" in argv:
                at = argv.index("runserver") + 1
                if at < len(argv) and not argv[at].startswith("-"):
                    del argv[at]  # the doc's own address
                argv.insert(at, f"127.0.0.1:{port}")
                roles.append("web")
            elif "worker" in argv:
                roles.append("worker")
            else:
                roles.append("other")
            log_path = logs / f"{number}-{argv[-1] if argv else 'x'}.log"
            process = spawn(
                venv.resolve(argv, f"{step.where} $ {command.text}"),
                log_path=log_path,
                env=venv.env,
                cwd=site,
            )
            running.processes.append(
                Background(
                    process=process, log_path=log_path, name=f"$ {shlex.join(argv)}"
                )
            )
        if roles.count("web") != 1 or "worker" not in roles:
            raise StepFailed(step.where, "expected one runserver and a celery worker")
        for role, background in zip(roles, running.processes, strict=True):
            if role == "web":
                _wait(partial(_answers, running.origin + "/"), running, background)
            elif role == "worker":
                _wait(partial(_worker_ready, background), running, background)
        yield running
    finally:
        for background in reversed(running.processes):
            background.stop()


# --- the walk -----------------------------------------------------------------


def matches(shown: Any, real: Any) -> bool:
    """Whether ``real`` is what the doc shows as ``shown``; a string the doc shortens
    with ``...`` matches any value that begins with the part shown."""
    if isinstance(shown, dict):
        return (
            isinstance(real, dict)
            and shown.keys() == real.keys()
            and all(matches(value, real[key]) for key, value in shown.items())
        )
    if isinstance(shown, list):
        return (
            isinstance(real, list)
            and len(shown) == len(real)
            and all(matches(a, b) for a, b in zip(shown, real, strict=True))
        )
    if isinstance(shown, str) and shown.endswith("..."):
        return isinstance(real, str) and real.startswith(shown[:-3])
    return type(shown) is type(real) and shown == real


@dataclass
class Walk:
    """What the calls and emails carry from one step to the next."""

    running: Running
    mailbox: SMTPServer
    secrets: dict[str, str] = field(default_factory=dict)  # the doc's -> the real
    variables: dict[str, str] = field(default_factory=dict)  # $NAME -> value
    paths: list[str] = field(default_factory=list)

    def substitute(self, text: str, where: str) -> str:
        for shown, real in self.secrets.items():
            text = text.replace(shown, real)

        def variable(match: re.Match[str]) -> str:
            if match[1] not in self.variables:
                raise StepFailed(where, f"${match[1]} is not set by an earlier answer")
            return self.variables[match[1]]

        return VARIABLE.sub(variable, text)

    def call(self, step: Step) -> None:
        commands = console_commands(step)
        if len(commands) != 1:
            raise StepFailed(step.where, "a call block holds one curl command")
        command = commands[0]
        where = f"{step.where} $ {' '.join(command.text.split())}"
        request, show_status = self._request(command.argv, where)
        self.paths.append(urlsplit(request.full_url).path)
        try:
            with OPENER.open(request, timeout=HTTP_TIMEOUT) as response:
                status, reason, raw = response.status, response.reason, response.read()
                version = response.version
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read()
            status, reason, version = exc.code, str(exc.reason), 11
        text = raw.decode("utf-8", "replace")
        if not 200 <= status < 300:
            raise StepFailed(
                where, f"answered {status}", text + "\n" + self.running.logs()
            )
        answer = json.loads(text) if text else None
        shown = [line for line in command.output if line.strip()]
        if show_status:
            status_line = f"HTTP/{version // 10}.{version % 10} {status} {reason}"
            if not shown or shown[0] != status_line:
                raise StepFailed(
                    where, f"the doc shows {shown[:1]}, got {status_line!r}"
                )
            if any(line != "..." for line in shown[1:]):
                raise StepFailed(where, "only '...' may follow a shown status line")
        elif shown:
            expected = json.loads("\n".join(shown))
            if not matches(expected, answer):
                raise StepFailed(where, f"the doc shows {expected!r}, got {answer!r}")
        if isinstance(answer, dict):
            for key, value in answer.items():
                if isinstance(value, str):
                    self.variables[key.upper()] = value

    def _request(
        self, argv: list[str], where: str
    ) -> tuple[urllib.request.Request, bool]:
        """The urllib request of a ``curl`` command line, and whether ``-i`` is on."""
        if argv[0] != "curl":
            raise StepFailed(where, "a call must be one curl command")
        method: str | None = None
        headers: dict[str, str] = {}
        data: str | None = None
        url: str | None = None
        show_status = False
        args = iter(argv[1:])
        for arg in args:
            if arg in {"-s", "-S", "-sS", "-Ss"}:
                continue
            if arg == "-i":
                show_status = True
            elif arg == "-X":
                method = next(args)
            elif arg == "-H":
                name, _, value = next(args).partition(":")
                headers[name.strip()] = self.substitute(value.strip(), where)
            elif arg == "-d":
                data = self.substitute(next(args), where)
            elif arg.startswith("http") and url is None:
                url = arg
            else:
                raise StepFailed(where, f"this test does not read curl's {arg!r}")
        if url is None:
            raise StepFailed(where, "no URL")
        origin = urlsplit(self.running.origin)
        parts = urlsplit(self.substitute(url, where))
        request = urllib.request.Request(
            urlunsplit((origin.scheme, origin.netloc, *parts[2:])),
            data=None if data is None else data.encode(),
            headers=headers,
            method=method or ("POST" if data is not None else "GET"),
        )
        return request, show_status

    def email(self, step: Step) -> None:
        """Wait for the email ``step`` shows; learn the secrets it holds."""
        head, separator, tail = step.body.partition("\n...\n")
        if not separator:
            raise StepFailed(step.where, "an email shows its headers, '...', its body")
        headers = {
            name.strip(): value.strip()
            for name, _, value in (line.partition(":") for line in head.splitlines())
        }
        if "To" not in headers or "Subject" not in headers:
            raise StepFailed(step.where, "an email needs To: and Subject: lines")
        received = self.mailbox.wait_for(
            headers["To"], headers["Subject"], check=self.running.assert_alive
        )
        for name, value in headers.items():
            if str(received.message[name]) != value:
                raise StepFailed(
                    step.where,
                    f"{name}: the doc shows {value!r}, got {received.message[name]!r}",
                )
        real = [line.rstrip() for line in received.part("plain").splitlines()]
        position = 0
        for shown in (line.rstrip() for line in tail.splitlines()):
            if not shown:
                continue
            pattern, secret = _line_pattern(shown)
            for index in range(position, len(real)):
                found = pattern.fullmatch(real[index])
                if found is not None:
                    if secret is not None:
                        self.secrets[secret] = found[1]
                    position = index + 1
                    break
            else:
                raise StepFailed(
                    step.where,
                    f"the email has no line {shown!r} (in the doc's order); it reads:\n"
                    + "\n".join(real),
                )


def _line_pattern(shown: str) -> tuple[re.Pattern[str], str | None]:
    """A line of a shown email as a pattern; a link token or code as a group."""
    link = TOKEN_IN_LINK.search(shown)
    if link is not None:
        return (
            re.compile(
                re.escape(shown[: link.start(1)])
                + r"([A-Za-z0-9_-]+)"
                + re.escape(shown[link.end(1) :])
            ),
            link[1],
        )
    code = CODE_LINE.fullmatch(shown)
    if code is not None:
        return re.compile(re.escape(code[1]) + r"(\d{6})"), code[2]
    return re.compile(re.escape(shown)), None


# --- fixtures -----------------------------------------------------------------


@pytest.fixture
def smtp_sink() -> Iterator[SMTPServer]:
    """An aiosmtpd server on a spare loopback port, in this process."""
    with running_smtp() as server:
        yield server


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    """A ``redis-server`` of this test's own: the project's broker and cache."""
    if shutil.which("redis-server") is None:
        unavailable("quickstart test", "redis-server is not on PATH")
    with private_redis(tmp_path) as server:
        yield server.port


# --- the tests ----------------------------------------------------------------


def test_quickstart_as_written(
    quickstart_venv: Venv, smtp_sink: SMTPServer, redis_port: int, tmp_path: Path
) -> None:
    steps = parse_steps(QUICKSTART_DOC.read_text(encoding="utf-8"))
    site = build_project(
        quickstart_venv,
        steps,
        tmp_path,
        overrides=OVERRIDES.format(redis_port=redis_port, smtp_port=smtp_sink.port),
    )
    (start_step,) = [step for step in steps if step.action == "start"]
    logs = tmp_path / "logs"
    logs.mkdir()
    with start(quickstart_venv, start_step, site, logs) as running:
        walk = Walk(running=running, mailbox=smtp_sink)
        try:
            for step in steps:
                if step.action == "call":
                    walk.call(step)
                elif step.action == "email":
                    walk.email(step)
            running.assert_alive()
        except BaseException:
            print(running.logs())
            raise
    remaining = iter(walk.paths)
    for path in REQUIRED_CALLS:
        assert any(p.endswith(path) for p in remaining), (
            f"the quickstart's calls {walk.paths} lack {path} (after those before it)"
        )


@pytest.mark.parametrize(
    ("line", "check_id"),
    [
        pytest.param(
            "from .celery import app as celery_app\n",
            "kinwise_auth.E010",
            id="celery-import",
        ),
        pytest.param(
            '    "kinwise_auth.backends.EmailBackend",\n',
            "kinwise_auth.E011",
            id="email-backend",
        ),
    ],
)
def test_quickstart_check_stops_a_missing_step(
    quickstart_venv: Venv, tmp_path: Path, line: str, check_id: str
) -> None:
    """Without ``line``, the doc's own ``manage.py check`` fails with ``check_id``."""
    text = QUICKSTART_DOC.read_text(encoding="utf-8")
    assert text.count(line) == 1, f"the doc should hold {line!r} once"
    steps = parse_steps(text.replace(line, ""))
    with pytest.raises(StepFailed) as failed:
        build_project(quickstart_venv, steps, tmp_path)
    assert "manage.py check" in failed.value.where
    assert check_id in failed.value.output
