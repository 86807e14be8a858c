"""Test settings with a custom user whose ``USERNAME_FIELD`` is ``email``."""

from __future__ import annotations

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
AUTH_USER_MODEL = "testapp.EmailUser"
