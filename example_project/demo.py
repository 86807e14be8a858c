#!/usr/bin/env python
"""Run the example project in one terminal: web, Celery worker and Celery beat.

    cd example_project && python demo.py        # with the virtualenv's python

It applies migrations, then starts the three processes and prints their output line
by line, each line tagged with the process it came from. Ctrl-C (or SIGTERM) stops
them all: each gets SIGTERM, then SIGKILL if it has not exited within 10 seconds; a
second Ctrl-C kills at once. If one of them exits on its own, the others are stopped
and the demo exits with status 1.

Configuration is the project's own (environment variables, example_project/.env; see
.env.example); PORT picks the web port (default 8000). What is not configured there
is chosen by what this machine runs: Redis on 127.0.0.1:6379 as broker and cache
and PostgreSQL on 127.0.0.1:5432 (database ``kinwise_demo``, created if missing)
when they answer, otherwise SQLite, kombu's filesystem broker and a file cache under
``example_project/.demo/``, which need no server. The demo prints what it chose and
why. A broker that was configured but does not answer stops the demo (status 1).

Standard library only, so that it runs before anything else is set up.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
STOP_TIMEOUT = 10.0
CONNECT_TIMEOUT = 2.0

# ANSI colours of the tags: green, cyan, magenta, yellow.
COLOURS = {"web": "32", "worker": "36", "beat": "35", "migrate": "33"}
TAG_WIDTH = max(len(name) for name in COLOURS)

# Prints, as JSON, what the demo reports and checks: the project's settings as
# Django sees them (environment and .env included).
PROBE = """
import json
import django
from django.conf import settings

django.setup()
db = settings.DATABASES["default"]
cache = settings.CACHES["default"]
print(json.dumps({
    "broker": settings.CELERY_BROKER_URL,
    "result_backend": settings.CELERY_RESULT_BACKEND,
    "db_engine": db["ENGINE"],
    "db_name": str(db.get("NAME") or ""),
    "db_host": str(db.get("HOST") or ""),
    "db_port": str(db.get("PORT") or ""),
    "cache_backend": cache["BACKEND"],
    "cache_location": str(cache.get("LOCATION") or ""),
    "email_backend": settings.EMAIL_BACKEND,
    "debug": settings.DEBUG,
}))
"""

_print_lock = threading.Lock()


def use_colour() -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or sys.stdout.isatty()


def emit(text: str) -> None:
    """Write one line to stdout, whole, whichever thread calls."""
    with _print_lock:
        try:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


def say(message: str) -> None:
    emit(f"demo: {message}")


def tag(name: str) -> str:
    label = f"{name:<{TAG_WIDTH}} |"
    if use_colour():
        return f"\033[{COLOURS.get(name, '37')};1m{label}\033[0m "
    return f"{label} "


def redact(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


# ---------------------------------------------------------------------------
# Broker check
# ---------------------------------------------------------------------------


def _resp(*args: str) -> bytes:
    """A Redis command in RESP, the protocol's wire format."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_replies(sock: socket.socket, count: int) -> list[str]:
    buffer = b""
    while buffer.count(b"\r\n") < count:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buffer += chunk
    return [line.decode(errors="replace") for line in buffer.split(b"\r\n")[:count]]


def check_redis(url: str) -> str | None:
    """None if the Redis at ``url`` answers PING, else why not."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    try:
        if parts.scheme in {"redis+socket", "unix"}:
            where = parts.path
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(parts.path)
        else:
            host, port = parts.hostname or "localhost", parts.port or 6379
            where = f"{host}:{port}"
            sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
            if parts.scheme == "rediss":
                context = ssl.create_default_context()
                if query.get("ssl_cert_reqs", [""])[0].lower() in {"none", "cert_none"}:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname=host)
    except OSError as exc:
        return f"cannot connect to {where}: {exc.strerror or exc}"
    with sock:
        commands = []
        if parts.password is not None:
            credentials = [unquote(parts.password)]
            if parts.username:
                credentials.insert(0, unquote(parts.username))
            commands.append(_resp("AUTH", *credentials))
        commands.append(_resp("PING"))
        try:
            sock.sendall(b"".join(commands))
            replies = _read_replies(sock, len(commands))
        except OSError as exc:
            return f"no answer from {where}: {exc.strerror or exc}"
    if not replies:
        return f"{where} closed the connection without answering PING"
    for reply in replies:
        if reply.startswith("-"):
            return f"{where} answered: {reply[1:]}"
    if replies[-1] != "+PONG":
        return f"{where} does not speak Redis (answered {replies[-1][:40]!r})"
    return None


def check_broker(url: str) -> str | None:
    """None if the broker looks reachable, else why not (Redis gets a real PING)."""
    scheme = urlsplit(url).scheme
    if scheme in {"redis", "rediss", "redis+socket", "unix"}:
        return check_redis(url)
    parts = urlsplit(url)
    if not parts.hostname:
        return None  # memory://, filesystem://, ...: nothing to reach
    default_port = {"amqp": 5672, "pyamqp": 5672, "amqps": 5671}.get(scheme)
    port = parts.port or default_port
    if port is None:
        return None
    try:
        socket.create_connection(
            (parts.hostname, port), timeout=CONNECT_TIMEOUT
        ).close()
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"
    return None


# ---------------------------------------------------------------------------
# Choosing services: the configured ones, else local servers, else embedded
# ---------------------------------------------------------------------------

# Where the demo looks for local servers (DEMO_LOCAL_REDIS, DEMO_LOCAL_POSTGRES
# "host:port" point it elsewhere, e.g. at a closed port to try the embedded mode).
LOCAL_REDIS = os.environ.get("DEMO_LOCAL_REDIS", "redis://127.0.0.1:6379")
_pg_host, _, _pg_port = os.environ.get(
    "DEMO_LOCAL_POSTGRES", "127.0.0.1:5432"
).rpartition(":")
LOCAL_POSTGRES = (_pg_host, int(_pg_port))
DEMO_DATABASE = "kinwise_demo"
# Where the embedded SQLite file, broker and cache live (DEMO_DIR moves them).
EMBEDDED_DIR = Path(os.environ.get("DEMO_DIR", HERE / ".demo")).resolve()


def configured_names() -> set[str]:
    """Variables set in the environment or in the project's .env file."""
    names = set(os.environ)
    env_file = os.environ.get("ENV_FILE", str(HERE / ".env"))
    if env_file and Path(env_file).is_file():
        for line in Path(env_file).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("export "):
                line = line[len("export ") :]
            if line and not line.startswith("#") and "=" in line:
                names.add(line.split("=", 1)[0].strip())
    return names


def local_postgres_url() -> tuple[str | None, str]:
    """A URL of the demo database on the local PostgreSQL, or None and why not."""
    host, port = LOCAL_POSTGRES
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        return None, f"nothing answers on {host}:{port} ({exc.strerror or exc})"
    try:
        import psycopg  # installed with the example project's requirements
    except ImportError:
        return None, "psycopg is not installed"
    user = os.environ.get("PGUSER", "postgres")
    try:
        with psycopg.connect(
            host=host,
            port=port,
            user=user,
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
        ) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DEMO_DATABASE]
            ).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc
        return None, f"PostgreSQL on {host}:{port} refused: {first_line}"
    return f"postgres://{user}@{host}:{port}/{DEMO_DATABASE}", ""


def base_url(port: str) -> str:
    return f"http://127.0.0.1:{port}"


def choose_services(env: dict[str, str], port: str) -> list[str]:
    """Fill in the broker, cache and database the configuration leaves open.

    Returns one line per choice, saying why.
    """
    configured = configured_names()
    notes: list[str] = []
    redis_problem: str | None = "configured"
    if not {"CELERY_BROKER_URL", "CACHE_URL"} <= configured:
        redis_problem = check_redis(LOCAL_REDIS)
    if "CELERY_BROKER_URL" not in configured:
        if redis_problem is None:
            env["CELERY_BROKER_URL"] = f"{LOCAL_REDIS}/0"
            notes.append(f"Broker: Redis answers on {LOCAL_REDIS}")
        else:
            env["CELERY_BROKER_URL"] = "filesystem://"
            env.setdefault("FILESYSTEM_BROKER_DIR", str(EMBEDDED_DIR / "broker"))
            notes.append(
                f"Broker: embedded, files in {EMBEDDED_DIR / 'broker'}: "
                f"Redis {redis_problem}"
            )
    if "CACHE_URL" not in configured:
        if redis_problem is None:
            env["CACHE_URL"] = f"{LOCAL_REDIS}/1"
            notes.append("Cache: Redis, shared by web and worker")
        else:
            (EMBEDDED_DIR / "cache").mkdir(parents=True, exist_ok=True)
            env["CACHE_URL"] = f"filecache://{EMBEDDED_DIR / 'cache'}"
            notes.append(f"Cache: embedded, files in {EMBEDDED_DIR / 'cache'}")
    if "DATABASE_URL" not in configured:
        url, why_not = local_postgres_url()
        if url is not None:
            env["DATABASE_URL"] = url
            notes.append(f"Database: PostgreSQL answers (database {DEMO_DATABASE})")
        else:
            EMBEDDED_DIR.mkdir(parents=True, exist_ok=True)
            env["DATABASE_URL"] = f"sqlite:///{EMBEDDED_DIR / 'db.sqlite3'}"
            notes.append(f"Database: embedded SQLite: PostgreSQL: {why_not}")
    if "FRONTEND_URL" not in configured:
        # The emailed links open the demo page, which acts on their tokens.
        env["FRONTEND_URL"] = base_url(port)
    return notes


# ---------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------


class Child:
    """One process whose output is copied, tagged, to ours."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        extra: dict[str, Any] = {}
        if os.name == "posix":
            # Its own process group: Ctrl-C reaches only the demo, which then stops
            # each child in order (and can kill a worker's pool with the group).
            extra["start_new_session"] = True
        else:
            extra["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        self.proc = subprocess.Popen(
            list(argv),
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **extra,
        )
        assert self.proc.stdout is not None
        self.reader = threading.Thread(
            target=self._copy, args=(self.proc.stdout,), daemon=True
        )
        self.reader.start()

    def _copy(self, stream: IO[bytes]) -> None:
        prefix = tag(self.name)
        for raw in iter(stream.readline, b""):
            emit(prefix + raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.running:
            self.proc.terminate()

    def kill(self) -> None:
        if not self.running:
            return
        if os.name == "posix":
            try:
                # The group holds what the child started (a worker's pool).
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
        else:
            self.proc.kill()
        self.proc.wait()


class Demo:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self.stop = threading.Event()
        self.force = threading.Event()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.force.set()
            return
        self.stop.set()
        name = signal.Signals(signum).name
        say(f"{name} received: stopping (again to kill at once)")

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self.on_signal)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        """SIGTERM every child, wait up to STOP_TIMEOUT, then SIGKILL."""
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        while (
            any(child.running for child in self.children)
            and time.monotonic() < deadline
            and not self.force.is_set()
        ):
            time.sleep(0.1)
        for child in self.children:
            if child.running:
                say(f"{child.name} did not stop in time: killing it")
                child.kill()
        for child in self.children:
            child.reader.join(timeout=2)

    def wait(self) -> Child | None:
        """Block until a stop signal (None) or until a child exits (that child)."""
        while not self.stop.wait(0.2):
            for child in self.children:
                if not child.running:
                    return child
        return None


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def probe_settings(env: dict[str, str]) -> dict[str, Any] | None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        return None
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def describe_database(info: dict[str, Any]) -> str:
    engine = info["db_engine"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"SQLite {info['db_name']}"
    where = info["db_host"] or "local socket"
    if info["db_port"]:
        where += f":{info['db_port']}"
    return f"{engine} {info['db_name']} on {where}"


def banner(info: dict[str, Any], port: str, notes: list[str]) -> None:
    base = base_url(port)
    cache = info["cache_backend"].rsplit(".", 1)[-1]
    location = info["cache_location"]
    if isinstance(location, str) and "://" in location:
        location = redact(location)
    email = info["email_backend"]
    if email == "django.core.mail.backends.console.EmailBackend":
        email = "console: each email is printed in the worker's output"
    elif email == "demo.mail.MailboxBackend":
        email = f"dev mailbox: {base}/dev/mailbox/"
    for line in (
        "",
        "kinwise-auth example project",
        f"  Demo      {base}/   <- open this in a browser",
        f"  Mailbox   {base}/dev/mailbox/",
        f"  API       {base}/api/v1/auth/   (try POST {base}/api/v1/auth/register/)",
        f"  API docs  {base}/api/docs/   (OpenAPI schema at {base}/api/schema/)",
        f"  Admin     {base}/admin/",
        f"  Broker    {redact(info['broker'])}",
        f"  Results   {info['result_backend']}",
        f"  Database  {describe_database(info)}",
        f"  Cache     {cache} {location}",
        f"  Email     {email}",
        *(f"  ({note})" for note in notes),
        "  Press Ctrl-C to stop.",
        "",
    ):
        emit(line)


def main() -> int:
    os.chdir(HERE)
    port = os.environ.get("PORT", "8000")
    env = child_env()
    python = sys.executable
    notes = choose_services(env, port)

    info = probe_settings(env)
    if info is None:
        say("could not load the project's settings (output above).")
        return 1

    problem = check_broker(info["broker"])
    if problem is not None:
        say(f"the Celery broker is not reachable: {redact(info['broker'])}")
        say(f"  {problem}")
        say("The worker and beat need it. Start Redis, for example:")
        say('  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""')
        say("or point CELERY_BROKER_URL (environment or example_project/.env) at one.")
        return 1

    demo = Demo()
    demo.install_signal_handlers()

    migrate = demo.start("migrate", [python, "manage.py", "migrate", "--noinput"], env)
    while migrate.running and not demo.stop.is_set():
        time.sleep(0.1)
    if demo.stop.is_set():
        demo.stop_all()
        return 0
    migrate.reader.join(timeout=2)
    demo.children.remove(migrate)
    if migrate.proc.returncode != 0:
        say(f"migrate failed (exit status {migrate.proc.returncode}).")
        return 1

    banner(info, port, notes)
    celery = [python, "-m", "celery", "-A", "config"]
    demo.start(
        "web",
        [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        env,
    )
    demo.start(
        "worker",
        [*celery, "worker", "-l", "info", "--concurrency", "1", "-n", "demo@%h"],
        env,
    )
    demo.start("beat", [*celery, "beat", "-l", "info"], env)

    died = demo.wait()
    if died is None:
        demo.stop_all()
        say("stopped.")
        return 0
    say(f"{died.name} exited with status {died.proc.returncode}: stopping the others.")
    demo.stop_all()
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before the handlers are in place
        sys.exit(130)
