"""Frontend-ready account flows for Django REST Framework, with email sent by Celery."""

from __future__ import annotations

__version__ = "0.1.0.dev0"
