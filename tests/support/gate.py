"""A suite that cannot run: skipped, or failed when ``CI`` says it must run."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["unavailable"]


def unavailable(suite: str, reason: str) -> NoReturn:
    """Skip with ``reason``, or fail when ``CI`` is set ("true", "1", "yes"), so a
    CI run cannot pass by skipping."""
    message = f"{suite} cannot run: {reason}"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
