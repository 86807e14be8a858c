"""Settings of the kinwise-auth example project.

Everything deployment-specific comes from environment variables (read with
django-environ), optionally from ``example_project/.env``; ``.env.example`` documents
each one. The defaults suit local development: DEBUG on, SQLite, Redis on
127.0.0.1:6379 as broker (db 0) and shared cache (db 1), emails printed to the
console of the process that sends them (the Celery worker).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ  # type: ignore[import-untyped]
from celery.schedules import crontab
from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Variables already in the environment win over the file. ENV_FILE names another
# file; an empty ENV_FILE reads none (the test suite uses that).
_env_file = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if _env_file:
    environ.Env.read_env(_env_file)

# ---------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------

DEBUG: bool = env.bool("DEBUG", default=True)

_DEV_SECRET_KEY = "django-insecure-kinwise-example-dev-only-never-use-in-production"
SECRET_KEY: str = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == _DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is the development default while DEBUG is off: set SECRET_KEY "
        "to a long random value (python -c 'import secrets; "
        "print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
# The demo SPA's origins: `make demo` serves it on another port (run_demo.py,
# SPA_PORT). In development they are trusted by default, for CORS and for the
# browser transport's CSRF check; in production nothing is, unless listed.
_DEMO_SPA_ORIGINS = ["http://localhost:5173", "http://127.0.0.1:5173"]
# Origins (scheme://host[:port]) whose unsafe requests pass Django's CSRF check:
# the admin behind HTTPS, and an SPA on another origin using the browser transport.
CSRF_TRUSTED_ORIGINS: list[str] = env.list(
    "CSRF_TRUSTED_ORIGINS", default=_DEMO_SPA_ORIGINS if DEBUG else []
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_celery_beat",
    "django_celery_results",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "kinwise_auth",
]
if DEBUG:
    # The demo page and the dev mailbox (development only).
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before CommonMiddleware (and anything else that may answer on its own), so
    # that every response, preflight included, carries the CORS headers.
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------

DATABASES: dict[str, dict[str, Any]] = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    )
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web, worker and beat write to the same file: wait for locks rather than fail
    # at once, take the write lock when a transaction starts (no upgrade deadlock),
    # and let readers run beside the writer (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------------------
# Cache: shared by web and worker, and by every web process (rate limits)
# ---------------------------------------------------------------------------

_REDIS_SCHEMES = {"redis", "rediss", "rediscache", "valkey", "valkeys"}
_cache_url: str = env.str("CACHE_URL", default="redis://127.0.0.1:6379/1")
_cache: dict[str, Any] = env.cache_url_config(
    _cache_url,
    # django-environ picks django_redis for redis:// when it is installed; this
    # project uses Django's own Redis backend, whatever else is installed.
    backend=(
        "django.core.cache.backends.redis.RedisCache"
        if urlsplit(_cache_url).scheme in _REDIS_SCHEMES
        else None
    ),
)
if _cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # A Redis that does not answer must fail fast (rate limits then fail open),
    # not hang a request; ?socket_timeout=... in CACHE_URL overrides these.
    _cache.setdefault("OPTIONS", {})
    _cache["OPTIONS"].setdefault("socket_connect_timeout", 1)
    _cache["OPTIONS"].setdefault("socket_timeout", 1)
CACHES = {"default": _cache}

# ---------------------------------------------------------------------------
# Authentication, passwords, JWT
# ---------------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "kinwise_auth.backends.EmailBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=5),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=7),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

# The OpenAPI description (kinwise-auth's "openapi" extra): /api/schema/ and
# Swagger UI at /api/docs/.
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "kinwise-auth",
    "DESCRIPTION": "Registration, email verification, sign-in by emailed code or "
    "password with JWTs, password reset and account management.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# ---------------------------------------------------------------------------
# kinwise_auth
# ---------------------------------------------------------------------------

FRONTEND_URL: str = env.str("FRONTEND_URL", default="http://localhost:8000")

KINWISE_AUTH = {
    "FRONTEND_URL": FRONTEND_URL,
    "SITE_NAME": env("SITE_NAME", default="KinWise demo"),
    # Passkeys (docs/passkeys.md). Unset: FRONTEND_URL's host and origin.
    "WEBAUTHN_RP_ID": env.str("WEBAUTHN_RP_ID", default="") or None,
    "WEBAUTHN_ORIGINS": env.list("WEBAUTHN_ORIGINS", default=[]) or None,
    # The admin's sign-in (config/admin_login.py): every POST counts, per client IP
    # and per username or email typed, in the shared cache below.
    "RATE_LIMITS": {"admin_login": {"ip": "10/m", "email": "5/10m"}},
    # The outbox's timings (docs/settings.md). Unset, the claim follows from
    # EMAIL_TIMEOUT below: 3 x 10 s + 15 s.
    "OUTBOX_CLAIM_TIMEOUT": env.int("OUTBOX_CLAIM_TIMEOUT", default=None),
    "OUTBOX_REDRIVE_AFTER": env.int("OUTBOX_REDRIVE_AFTER", default=60),
    # The browser transport's refresh-token cookies (HttpOnly, docs/spa.md).
    # Browsers keep a Secure cookie from http://localhost (and 127.0.0.1) too;
    # REFRESH_COOKIE_SECURE=false only for plain HTTP on another host name.
    "BROWSER_REFRESH_COOKIE": {
        "secure": env.bool("REFRESH_COOKIE_SECURE", default=True),
        "samesite": env.str("REFRESH_COOKIE_SAMESITE", default="Lax"),
        "domain": env.str("REFRESH_COOKIE_DOMAIN", default="") or None,
    },
}

# django-ratelimit: the limits live in the shared cache above.
RATELIMIT_ENABLE: bool = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_USE_CACHE = "default"

# ---------------------------------------------------------------------------
# CORS: a frontend served from another origin calls the API
# ---------------------------------------------------------------------------

CORS_ALLOWED_ORIGINS: list[str] = env.list(
    "CORS_ALLOWED_ORIGINS", default=_DEMO_SPA_ORIGINS if DEBUG else []
)
# The browser transport's fetch() calls send cookies (credentials: "include"):
# the refresh-token cookie and the csrftoken cookie. The X-CSRFToken header they
# carry is among django-cors-headers' default allowed headers.
CORS_ALLOW_CREDENTIALS = True
CORS_ALLOW_HEADERS = (*default_headers,)

# ---------------------------------------------------------------------------
# Email (sent by the Celery worker)
# ---------------------------------------------------------------------------

# With DEBUG on, emails land in the dev mailbox (/dev/mailbox/); otherwise they
# are printed by the worker until EMAIL_BACKEND names a real one.
EMAIL_BACKEND: str = env.str(
    "EMAIL_BACKEND",
    default=(
        "demo.mail.MailboxBackend"
        if DEBUG
        else "django.core.mail.backends.console.EmailBackend"
    ),
)
EMAIL_HOST: str = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT: int = env.int("EMAIL_PORT", default=25)
EMAIL_USE_TLS: bool = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL: bool = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_HOST_USER: str = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD: str = env.str("EMAIL_HOST_PASSWORD", default="")
# A hung SMTP server must time out so the task can retry.
EMAIL_TIMEOUT: int = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL: str = env.str(
    "DEFAULT_FROM_EMAIL", default="KinWise <noreply@example.com>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# ---------------------------------------------------------------------------
# Internationalisation, static files
# ---------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE: str = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# ---------------------------------------------------------------------------
# HTTPS (on by default when DEBUG is off)
# ---------------------------------------------------------------------------

SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE: bool = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False
)
SECURE_HSTS_PRELOAD: bool = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Only behind a proxy that sets X-Forwarded-Proto itself (and strips the client's).
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# ---------------------------------------------------------------------------
# Celery (the app is config/celery.py; CELERY_X here is its setting x)
# ---------------------------------------------------------------------------

CELERY_BROKER_URL: str = env.str(
    "CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0"
)
# "django-db" stores results through django_celery_results (kinwise_auth's tasks
# ignore results: nothing secret ever lands there).
CELERY_RESULT_BACKEND: str = env.str("CELERY_RESULT_BACKEND", default="django-db")
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = 3600

CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60

# At-least-once delivery: acknowledge after the task ran, give the message back when
# the worker process dies, and take one message at a time.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task running when the worker loses the broker cannot be acknowledged any more
# (late acknowledgement): the broker will deliver its message again. Cancel it
# rather than finish a run whose message comes back anyway; kinwise_auth's claim
# keeps the second run from sending an email the first one sent.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# With Redis, an unacknowledged message is redelivered after this many seconds; it
# must exceed the longest task run and retry countdown (kinwise_auth caps its backoff
# below it). An email whose worker died does not wait for it: the re-drive sends it
# once the claim has expired.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The demo's embedded broker (no server): messages are files in one folder
    # that web, worker and beat share.
    _broker_dir = Path(
        env.str("FILESYSTEM_BROKER_DIR", default=str(BASE_DIR / ".demo" / "broker"))
    )
    _broker_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),
    }

# kinwise_auth's tasks go to their own queue. It is declared here, so a plain
# `celery -A config worker` consumes it along with the default queue. Each queue is
# bound with its own routing key: a bare Queue("auth") is bound to the "celery"
# exchange with the default key "celery", so on RabbitMQ it would also receive
# whatever is published to that exchange and key.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (
    Queue("celery", routing_key="celery"),
    Queue("auth", routing_key="auth"),
)
CELERY_TASK_ROUTES = {"kinwise_auth.tasks.*": {"queue": "auth"}}

# django-celery-beat keeps the schedule in the database (editable in the admin);
# the entries below are installed there when beat starts.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # One indexed query that almost always finds nothing (docs/performance.md):
    # often, so an email waits seconds, not minutes, after the broker returns.
    "kinwise-auth-requeue-unsent": {
        "task": "kinwise_auth.tasks.requeue_unsent",
        "schedule": env.float("OUTBOX_REDRIVE_INTERVAL", default=10.0),
    },
    "kinwise-auth-purge-expired": {
        "task": "kinwise_auth.tasks.purge_expired",
        "schedule": crontab(minute=0),
    },
}

# ---------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------

LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "format": "{asctime} {levelname} {name}: {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "kinwise_auth": {
            "handlers": ["console"],
            "level": LOG_LEVEL,
            "propagate": False,
        },
    },
}
