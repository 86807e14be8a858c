"""The Celery app the tests run tasks with (a host owns its own)."""

from __future__ import annotations

from celery import Celery

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.set_default()
