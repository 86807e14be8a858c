"""What a sign-in came from: a person-readable device label and its network."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from ua_parser import parse

__all__ = ["device_label", "network_of"]

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


def network_of(ip: str | None) -> str:
    """The network ``ip`` belongs to, as far as "a new sign-in" cares: its /24
    for IPv4, its /48 for IPv6 (an IPv4-mapped address counts as IPv4); ""
    for none."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
