"""Celery application of the example project.

The host owns its Celery app; kinwise_auth only ships ``shared_task``s named
``kinwise_auth.tasks.*``. Every ``CELERY_*`` Django setting configures this app
(see ``config/settings.py``: queues, routes, beat schedule).

Run with ``celery -A config worker -l info`` and ``celery -A config beat -l info``.
"""

from __future__ import annotations

import os

from celery import Celery, Task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")

# Read every Django setting prefixed CELERY_ (CELERY_BROKER_URL -> broker_url, ...).
app.config_from_object("django.conf:settings", namespace="CELERY")

# Find tasks.py in every installed app, kinwise_auth.tasks included.
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self: Task) -> None:
    """Print the request: ``config.celery.debug_task.delay()`` checks a worker runs."""
    print(f"Request: {self.request!r}")
