"""A person-readable label for the device a request came from."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

__all__ = ["device_label"]

MAX_LENGTH = 200


@lru_cache(maxsize=1024)
def device_label(user_agent: str) -> str:
    """ "Firefox 128 on Ubuntu", "Mobile Safari 17 on iOS"; "" when the
    User-Agent says nothing a person would recognise."""
    if not user_agent:
        return ""
    found = parse(user_agent[:512])
    parts = []
    agent = found.user_agent
    if agent is not None and agent.family != "Other":
        parts.append(f"{agent.family} {agent.major}" if agent.major else agent.family)
    system = found.os
    if system is not None and system.family != "Other":
        parts.append(("on " if parts else "") + system.family)
    return " ".join(parts)[:MAX_LENGTH]
