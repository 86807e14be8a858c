"""What a service may know of the request that called it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RequestMeta"]


@dataclass(frozen=True)
class RequestMeta:
    """The client's IP address (resolved by the view) and its user agent."""

    ip: str | None = None
    user_agent: str = ""
