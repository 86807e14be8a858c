"""Test settings: Django's own ``auth.User``, hostile DRF defaults, eager Celery.

``KINWISE_TEST_DB=postgres`` (what tox sets) runs against PostgreSQL, each tox env
on its own database (``KINWISE_TEST_DB_NAME``); the default is SQLite in memory.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "tests-only-secret-key-that-is-long-enough-for-hmac-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Installed without SITE_ID: SITE_NAME's default then falls back to the
    # frontend's host; tests/test_emails.py sets SITE_ID to use the Site's name.
    "django.contrib.sites",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "kinwise_auth",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("KINWISE_TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("KINWISE_TEST_DB_NAME", "kinwise_auth"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "ATOMIC_REQUESTS": True,
            "TEST": {
                "NAME": "test_" + os.environ.get("KINWISE_TEST_DB_NAME", "kinwise_auth")
            },
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "ATOMIC_REQUESTS": True,
        }
    }

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("KINWISE_TEST_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["KINWISE_TEST_CACHE_URL"],
        }
    }

AUTHENTICATION_BACKENDS = ["kinwise_auth.backends.EmailBackend"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Hostile host defaults: the package's views must pin their own policies.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.FormParser"],
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": "1/day"},
}

KINWISE_AUTH = {
    "FRONTEND_URL": "https://app.example.com",
    # Fault tests start workers with short lifetimes, e.g.
    # KINWISE_TEST_AUTH='{"OUTBOX_CLAIM_TIMEOUT": 2, "DELIVERY_RETRY_BACKOFF": 1}'.
    **json.loads(os.environ.get("KINWISE_TEST_AUTH", "{}")),
}

# The integration suite sets KINWISE_TEST_BROKER_URL (a real broker, a real worker)
# and KINWISE_TEST_SMTP_PORT (the worker sends to a real SMTP server).
CELERY_BROKER_URL = os.environ.get("KINWISE_TEST_BROKER_URL", "memory://")
# A result backend (the integration env's Redis db 13), to prove nothing lands there.
CELERY_RESULT_BACKEND = os.environ.get("KINWISE_TEST_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = "KINWISE_TEST_BROKER_URL" not in os.environ
# Eager retries only run when errors do not propagate (Celery re-raises Retry).
CELERY_TASK_EAGER_PROPAGATES = False
# Integration tests run a real beat: the expiry test schedules the purge every few
# seconds, the recovery tests the re-drive as the example project does.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
if os.environ.get("KINWISE_TEST_PURGE_EVERY"):
    CELERY_BEAT_SCHEDULE["kinwise-auth-purge-expired"] = {
        "task": "kinwise_auth.tasks.purge_expired",
        "schedule": float(os.environ["KINWISE_TEST_PURGE_EVERY"]),
    }
if os.environ.get("KINWISE_TEST_REDRIVE_EVERY"):
    CELERY_BEAT_SCHEDULE["kinwise-auth-requeue-unsent"] = {
        "task": "kinwise_auth.tasks.requeue_unsent",
        "schedule": float(os.environ["KINWISE_TEST_REDRIVE_EVERY"]),
    }
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("KINWISE_TEST_VISIBILITY_TIMEOUT", "3600"))
}

DEFAULT_FROM_EMAIL = "KinWise <noreply@example.com>"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
EMAIL_TIMEOUT = 10
if os.environ.get("KINWISE_TEST_SMTP_PORT"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = int(os.environ["KINWISE_TEST_SMTP_PORT"])

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The fast suite runs in one process, so a local cache counts correctly; the
# integration suite uses Redis. tests/test_checks.py exercises E006 itself.
SILENCED_SYSTEM_CHECKS = ["kinwise_auth.E006"]
