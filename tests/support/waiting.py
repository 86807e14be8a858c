"""The one bounded wait: poll a condition until it holds, fail the test if not."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    check: Callable[[], None] | None = None,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    ``check`` runs on every poll (e.g. to fail at once when a worker died);
    after ``timeout`` seconds the test fails, naming ``what`` it waited for and
    adding what ``details`` returns.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if check is not None:
            check()
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            pytest.fail(f"not within {timeout:.0f}s: {what}{extra}")
        time.sleep(interval)
