#!/usr/bin/env python
"""``make demo``: the example project's web server, Celery worker and beat in one
terminal, on Redis and PostgreSQL when they answer, else on embedded ones (it says
which did not), with a demo superuser; and the demo SPA, a static page served on
another port that signs in through the browser transport across origins. Ctrl-C
stops them all.

Reads PORT, SPA_PORT, DEMO_DIR, DEMO_LOCAL_REDIS and DEMO_LOCAL_POSTGRES
(docs/demo.md).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import socket
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from subprocess import PIPE, STDOUT, Popen, call

import django
import environ  # type: ignore[import-untyped]
import psycopg
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from kombu import Connection
from kombu.utils.url import maybe_sanitize_url

HERE = Path(__file__).resolve().parent
DEMO_DIR = Path(os.environ.get("DEMO_DIR", HERE / ".demo")).resolve()
LOCAL_REDIS = os.environ.get("DEMO_LOCAL_REDIS", "redis://127.0.0.1:6379").rstrip("/")
LOCAL_POSTGRES = os.environ.get("DEMO_LOCAL_POSTGRES", "127.0.0.1:5432")
# What the demo sets when the configuration does not: (what, on Redis, embedded).
CHOICES = {
    "CELERY_BROKER_URL": ("broker", f"{LOCAL_REDIS}/0", "filesystem://"),
    "CACHE_URL": ("cache", f"{LOCAL_REDIS}/1", f"filecache://{DEMO_DIR / 'cache'}"),
}
DEMO_DATABASE, SUPERUSER, SUPERUSER_EMAIL = "kinwise_demo", "admin", "admin@example.com"
TIMEOUT, STOP_TIMEOUT = 2, 10.0
COLOURS = {"web": "32", "worker": "36", "beat": "35", "spa": "33"}
# The demo SPA: its files, and where the browser transport is mounted.
SPA_DIR, BROWSER_API = HERE / "spa", "/api/v1/auth/browser/"
STOP, FORCE, PRINTING = threading.Event(), threading.Event(), threading.Lock()
READERS: list[threading.Thread] = []


def say(line: str, prefix: str = "demo: ") -> None:
    with PRINTING, contextlib.suppress(BrokenPipeError, ValueError):
        print(prefix + line, flush=True)


def redact(url: str) -> str:
    return maybe_sanitize_url(url) if "@" in url else url  # the password as **


def port_problem(port: str, name: str = "PORT", avoid: str = "") -> str | None:
    """None if a server can listen on 127.0.0.1:``port`` (the variable ``name``,
    not the same as ``avoid``), else what to run."""

    def free(number: int) -> bool:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver
            try:
                sock.bind(("127.0.0.1", number))
            except OSError:
                return False
        return True

    example = {"PORT": 8001, "SPA_PORT": 5174}.get(name, 8001)
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"{name}={port!r} is not a port number: run `make demo {name}={example}`"
    if port != avoid and free(int(port)):
        return None
    spare = next(
        (p for p in range(int(port) + 1, 65536) if str(p) != avoid and free(p)),
        example,
    )
    return f"port {port} is taken: run `make demo {name}={spare}`"


def create_demo_database(user: str) -> None:
    """Create the demo database on the local PostgreSQL unless it exists."""
    host, _, port = LOCAL_POSTGRES.rpartition(":")
    conninfo = f"host={host} port={port} user={user} dbname=postgres"
    with psycopg.connect(conninfo, connect_timeout=TIMEOUT, autocommit=True) as db:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        if not db.execute(query, [DEMO_DATABASE]).fetchone():
            db.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')


def spa_origins(spa_port: str) -> list[str]:
    """The demo SPA's origins: it may be opened under either host name."""
    return [f"http://{host}:{spa_port}" for host in ("localhost", "127.0.0.1")]


def trust_spa(configured: set[str], spa_port: str) -> None:
    """Let the demo SPA call the API with its cookies: its origins join CORS's
    allowed origins and CSRF's trusted ones (in os.environ, which the processes
    inherit), after the configured ones, if any."""
    for name in ("CORS_ALLOWED_ORIGINS", "CSRF_TRUSTED_ORIGINS"):
        listed = os.environ.get(name, "") if name in configured else ""
        origins = [o.strip() for o in listed.split(",") if o.strip()]
        os.environ[name] = ",".join(dict.fromkeys([*origins, *spa_origins(spa_port)]))


def allow_passkeys(configured: set[str], port: str, spa_port: str) -> None:
    """Passkeys need a domain for their relying party, never an IP address: the
    demo's is localhost, for the page and the SPA opened under that name (in
    os.environ, which the processes inherit), unless the configuration says."""
    if "WEBAUTHN_RP_ID" not in configured:
        os.environ["WEBAUTHN_RP_ID"] = "localhost"
        if "WEBAUTHN_ORIGINS" not in configured:
            os.environ["WEBAUTHN_ORIGINS"] = ",".join(
                f"http://localhost:{number}" for number in (port, spa_port)
            )


def choose_services(port: str) -> tuple[set[str], list[str]]:
    """Set the broker, cache and database the configuration leaves open (in
    os.environ, which the processes inherit); the configured names, and notes."""
    env_file = os.environ.get("ENV_FILE", str(HERE / ".env"))
    if env_file and Path(env_file).is_file():
        environ.Env.read_env(env_file)  # the environment wins, as in settings.py
    configured, notes = set(os.environ), list[str]()
    if open_ := [name for name in CHOICES if name not in configured]:
        down = ""
        try:
            with redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=TIMEOUT) as r:
                r.ping()
        except (redis.RedisError, OSError, ValueError) as exc:
            down = f"Redis on {redact(LOCAL_REDIS)} is not reachable: {exc}"
        os.environ.update({name: CHOICES[name][2 if down else 1] for name in open_})
        os.environ.setdefault("FILESYSTEM_BROKER_DIR", str(DEMO_DIR / "broker"))
        what = " and ".join(CHOICES[name][0] for name in open_)
        notes.append(
            f"{what} embedded: {down}" if down else f"{what} on {redact(LOCAL_REDIS)}"
        )
    if "DATABASE_URL" not in configured:
        user = os.environ.get("PGUSER", "postgres")
        pg = f"PostgreSQL on {LOCAL_POSTGRES}"
        try:
            create_demo_database(user)
            url = f"postgres://{user}@{LOCAL_POSTGRES}/{DEMO_DATABASE}"
            notes.append(f"database {DEMO_DATABASE} on {pg}")
        except psycopg.Error as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            notes.append(f"database SQLite: {pg} is not reachable: {why}")
            DEMO_DIR.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{DEMO_DIR / 'db.sqlite3'}"
        os.environ["DATABASE_URL"] = url
    os.environ.setdefault("FRONTEND_URL", f"http://127.0.0.1:{port}")  # email links
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["PYTHONUNBUFFERED"] = "1"
    return configured, notes


def ensure_superuser() -> str:
    """Create the demo superuser unless it exists; the banner's line about it."""
    django.setup()
    users, secret = get_user_model()._default_manager, DEMO_DIR / "superuser-password"
    user, state = users.filter(username=SUPERUSER).first(), "created now"
    if user is None:
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        secret.touch(mode=0o600)  # readable by this user only
        secret.write_text(secrets.token_urlsafe(12))
        user = users.create_superuser(SUPERUSER, SUPERUSER_EMAIL, secret.read_text())
        call_command("kinwise_auth_backfill", stdout=StringIO())  # email sign-in
    else:
        state = "created on the first start"
    password = secret.read_text() if secret.is_file() else ""
    if not user.check_password(password):
        password, state = "unknown", "set one: python manage.py changepassword admin"
    connections.close_all()
    return f"{SUPERUSER_EMAIL}  password {password}   ({state})"


def banner(port: str, spa_port: str, superuser: str, notes: list[str]) -> None:
    base, db = f"http://127.0.0.1:{port}", settings.DATABASES["default"]
    engine = str(db["ENGINE"]).rsplit(".", 1)[-1]
    engine = {"sqlite3": "SQLite", "postgresql": "PostgreSQL"}.get(engine, engine)
    where = f" on {db['HOST']}:{db['PORT']}" if db.get("HOST") else ""
    cache, email = settings.CACHES["default"], settings.EMAIL_BACKEND
    if email == "demo.mail.MailboxBackend":
        email = f"dev mailbox: {base}/dev/mailbox/"
    for line in (
        "",
        "kinwise-auth example project",
        f"  Demo      {base}/   <- open this in a browser",
        f"  Passkeys  http://localhost:{port}/   (the same page: a passkey needs a "
        "host name, not an IP)",
        f"  SPA       http://localhost:{spa_port}/   (another origin: the browser "
        f"transport at http://localhost:{port}{BROWSER_API})",
        f"  Mailbox   {base}/dev/mailbox/",
        f"  API       {base}/api/v1/auth/   (try POST {base}/api/v1/auth/register/)",
        f"  API docs  {base}/api/docs/   (OpenAPI schema at {base}/api/schema/)",
        f"  Admin     {base}/admin/",
        f"  Superuser {superuser}",
        f"  Broker    {redact(settings.CELERY_BROKER_URL)}",
        f"  Results   {settings.CELERY_RESULT_BACKEND}",
        f"  Database  {engine} {db['NAME']}{where}",
        f"  Cache     {cache['BACKEND'].rsplit('.', 1)[-1]} "
        + redact(str(cache.get("LOCATION") or "")),
        f"  Email     {email}",
        *(f"  ({note})" for note in notes),
        "  Press Ctrl-C to stop.",
        "",
    ):
        say(line, prefix="")


def tag(name: str) -> str:
    """The prefix of a process's lines: its name, coloured on a terminal."""
    text = f"{name:<6} | "
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        text = f"\033[{COLOURS[name]};1m{text}\033[0m"
    return text


def start(name: str, *argv: str) -> Popen[bytes]:
    """``argv`` in a process group of its own (Ctrl-C reaches only the demo, which
    stops each process); a thread copies its output, each line tagged."""
    process = Popen(argv, cwd=HERE, stdout=PIPE, stderr=STDOUT, start_new_session=True)
    prefix = tag(name)

    def copy() -> None:
        for raw in process.stdout or ():
            say(raw.decode("utf-8", "replace").rstrip("\r\n"), prefix)

    READERS.append(threading.Thread(target=copy, daemon=True))
    READERS[-1].start()
    return process


class SpaFiles(SimpleHTTPRequestHandler):
    """The demo SPA's files (``spa/``), plus ``config.js``: where its API is, on
    the host name the page was opened under (localhost or 127.0.0.1), so that
    page and API are the same site and the refresh cookie's SameSite=Lax holds."""

    api_port = "8000"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/config.js":
            return super().do_GET()
        body = (
            "// Served by run_demo.py: the API's browser transport, on this page's\n"
            "// host name and the demo's web port.\n"
            "window.KINWISE_API = `${location.protocol}//${location.hostname}:"
            f"{self.api_port}{BROWSER_API}`;\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/javascript; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return None

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # edits show on a reload
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        say(f"{self.address_string()} {format % args}", tag("spa"))


def serve_spa(spa_port: str, port: str) -> ThreadingHTTPServer:
    """The demo SPA on 127.0.0.1:``spa_port``, from a thread of this process."""
    handler = type("Files", (SpaFiles,), {"api_port": port})
    server = ThreadingHTTPServer(
        ("127.0.0.1", int(spa_port)),
        functools.partial(handler, directory=str(SPA_DIR)),
    )
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def supervise(children: dict[str, Popen[bytes]]) -> str | None:
    """Wait for a stop signal, or for a child to exit (its name); then SIGTERM
    each, and SIGKILL what is left after STOP_TIMEOUT or a second signal."""
    exited = None
    while exited is None and not STOP.wait(0.2):
        exited = next((n for n, p in children.items() if p.poll() is not None), None)
    say(f"{exited} exited: stopping all" if exited else "stopping (Ctrl-C again: kill)")
    for process in children.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(p.poll() is None for p in children.values()):
        if FORCE.wait(0.1) or time.monotonic() > deadline:
            break
    for name, process in children.items():
        if process.poll() is None:
            say(f"{name} did not stop in time: killing it")
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)  # a worker's pool too
            process.wait()
    for reader in READERS:
        reader.join(timeout=2)
    return exited


def main() -> int:
    os.chdir(HERE)
    port = os.environ.get("PORT") or "8000"
    spa_port = os.environ.get("SPA_PORT") or "5173"
    if problem := port_problem(port) or port_problem(spa_port, "SPA_PORT", port):
        say(problem)
        return 2
    configured, notes = choose_services(port)
    trust_spa(configured, spa_port)
    allow_passkeys(configured, port, spa_port)
    url, options = settings.CELERY_BROKER_URL, settings.CELERY_BROKER_TRANSPORT_OPTIONS
    try:  # a configured broker must answer (filesystem:// and memory:// always do)
        with Connection(url, connect_timeout=TIMEOUT, transport_options=options) as c:
            c.ensure_connection(max_retries=1, interval_start=0)
    except Exception as exc:  # whatever the transport raises
        say(f"the Celery broker is not reachable: {redact(url)}: {exc}")
        say("The worker and beat need it: start it, or point CELERY_BROKER_URL")
        say("(the environment or example_project/.env) at one that runs.")
        return 1
    manage = (sys.executable, "manage.py")
    if status := call([*manage, "migrate", "--noinput"], cwd=HERE):
        say(f"migrate failed (exit status {status}).")
        return 1
    if not settings.DEBUG:
        superuser = "none: DEBUG is off (python manage.py createsuperuser)"
    elif "DATABASE_URL" in configured:
        superuser = "none in your DATABASE_URL (python manage.py createsuperuser)"
    else:
        superuser = ensure_superuser()
    banner(port, spa_port, superuser, notes)

    try:
        spa = serve_spa(spa_port, port)
    except OSError as exc:  # taken since the check above
        say(f"the SPA cannot listen on port {spa_port}: {exc}")
        say("Run `make demo SPA_PORT=...` with a free port.")
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):  # supervise() acts on them
        signal.signal(signum, lambda *_: (FORCE if STOP.is_set() else STOP).set())
    celery = (sys.executable, "-m", "celery", "-A", "config")
    commands = {
        "web": [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        "worker": [*celery, "worker", "-l", "info", "-c", "1", "-n", "demo@%h"],
        "beat": [*celery, "beat", "-l", "info"],
    }
    children = {name: start(name, *argv) for name, argv in commands.items()}
    try:
        exited = supervise(children)
    finally:
        spa.shutdown()
        spa.server_close()
    if exited:
        say(f"stopped ({exited} exited with status {children[exited].returncode}).")
        return 1
    say("stopped.")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before the handlers are in place
        sys.exit(130)
