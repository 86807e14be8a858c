"""Who the package is to a passkey: the WebAuthn relying party.

``WEBAUTHN_RP_ID`` (default: ``FRONTEND_URL``'s host), ``WEBAUTHN_RP_NAME``
(default: :func:`~kinwise_auth.site.site_name`) and ``WEBAUTHN_ORIGINS`` (default:
``FRONTEND_URL``'s origin). A browser signs the origin of the page that asked and a
hash of the RP id into every answer; both are checked against these.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .conf import auth_settings
from .site import site_name

__all__ = ["rp_id", "rp_name", "origins", "problems"]

ANDROID_ORIGIN = "android:apk-key-hash:"


def rp_id() -> str:
    """The relying party id: a domain every origin is (under)."""
    configured = auth_settings.WEBAUTHN_RP_ID
    if configured:
        return str(configured).strip().lower()
    return (urlsplit(str(auth_settings.FRONTEND_URL or "")).hostname or "").lower()


def rp_name() -> str:
    """The name an authenticator shows beside the passkey."""
    return str(auth_settings.WEBAUTHN_RP_NAME or site_name() or rp_id())


def origins() -> list[str]:
    """The origins (scheme, host, port) whose pages may use the passkeys."""
    configured = auth_settings.WEBAUTHN_ORIGINS
    if configured:
        if isinstance(configured, str):
            configured = [configured]
        return [str(origin).strip().rstrip("/") for origin in configured]
    parts = urlsplit(str(auth_settings.FRONTEND_URL or ""))
    if not parts.scheme or not parts.netloc:
        return []
    return [f"{parts.scheme}://{parts.netloc}".lower()]


def problems() -> list[str]:
    """What keeps the passkey settings from working, in words; empty if nothing.

    The RP id must be a domain (browsers refuse an IP address), and every origin
    an ``https`` one (or ``http`` on ``localhost``) whose host is the RP id or
    under it, or an Android app's ``android:apk-key-hash:<hash>`` (the app
    proves its tie to the RP id by the site's Digital Asset Links file).
    """
    identifier = rp_id()
    if not identifier:
        return ["no RP id: set WEBAUTHN_RP_ID or FRONTEND_URL"]
    if _is_ip(identifier):
        return [f"the RP id {identifier!r} is an IP address; browsers need a domain"]
    if "/" in identifier or ":" in identifier or identifier.startswith("."):
        return [f"the RP id {identifier!r} is not a bare domain (no scheme or port)"]
    if "." not in identifier and identifier != "localhost":
        return [f"the RP id {identifier!r} is a top-level domain, not registrable"]
    found = []
    listed = origins()
    if not listed:
        found.append("no origins: set WEBAUTHN_ORIGINS or FRONTEND_URL")
    for origin in listed:
        if origin.startswith(ANDROID_ORIGIN):
            if not origin.removeprefix(ANDROID_ORIGIN):
                found.append(f"the android origin {origin!r} names no key hash")
            continue
        parts = urlsplit(origin)
        host = (parts.hostname or "").lower()
        local = host == "localhost" or host.endswith(".localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            found.append(f"the origin {origin!r} is neither https nor http://localhost")
        elif parts.path or parts.query or parts.fragment:
            found.append(f"the origin {origin!r} has a path; an origin has none")
        elif host != identifier and not host.endswith("." + identifier):
            found.append(
                f"the RP id {identifier!r} is not a registrable suffix of the "
                f"origin {origin!r}"
            )
    return found


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
