"""The example host project.

The Celery app is imported here so that it is configured whenever Django starts
(``shared_task`` then binds kinwise_auth's tasks to it).
"""

from __future__ import annotations

from .celery import app as celery_app

__all__ = ("celery_app",)
