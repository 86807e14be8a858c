"""Integration tests: real PostgreSQL, Redis, a Celery worker process and SMTP."""

from __future__ import annotations
