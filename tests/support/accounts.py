"""The accounts the integration tests make: one password, addresses unique to
the test (so another test's stray mail or row is never counted)."""

from __future__ import annotations

import uuid

__all__ = ["PASSWORD", "new_address"]

PASSWORD = "correct-Horse-battery-9"


def new_address(prefix: str) -> str:
    """``<prefix>-<12 random hex digits>@example.com``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"
