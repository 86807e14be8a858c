"""JSON requests over real HTTP, straight to the server under test.

Every opener here ignores the environment's proxy settings (``ProxyHandler({})``):
the servers are on loopback. An answer is parsed as JSON, or kept as text (e.g.
Django's 500 page), and timed from request sent to body read.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

__all__ = [
    "HTTP_TIMEOUT",
    "OPENER",
    "opener",
    "Answer",
    "request_json",
    "post_json",
    "status_of",
]

HTTP_TIMEOUT = 15.0  # a hang shows as a timing failure, not a stuck run


def opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """An opener with ``handlers`` (e.g. a cookie jar) and no proxy."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)


OPENER = opener()


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, parsed body, headers, and how long it took."""

    status: int
    body: Any
    elapsed: float = 0.0
    headers: Message = field(default_factory=Message)  # case-insensitive get()

    @property
    def code(self) -> Any:
        """The error code of an ``{"detail", "code"}`` body; None for any other."""
        return self.body.get("code") if isinstance(self.body, dict) else None


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode("utf-8", errors="replace")  # e.g. Django's 500 page


def request_json(
    method: str,
    url: str,
    payload: Mapping[str, Any] | None = None,
    *,
    access: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT,
    via: urllib.request.OpenerDirector | None = None,
) -> Answer:
    """Send ``payload`` (if any) as JSON, with ``access`` as a bearer token and
    extra ``headers``, through ``via`` (default :data:`OPENER`); the answer,
    whatever its status."""
    sent = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(dict(payload)).encode()
        sent["Content-Type"] = "application/json"
    if access is not None:
        sent["Authorization"] = f"Bearer {access}"
    sent.update(headers or {})
    request = urllib.request.Request(url, data=data, headers=sent, method=method)
    started = time.monotonic()
    try:
        with (via or OPENER).open(request, timeout=timeout) as response:
            raw = response.read()
            status, received = int(response.status), response.headers
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
            status, received = int(exc.code), exc.headers
    elapsed = time.monotonic() - started
    return Answer(status=status, body=_parse(raw), elapsed=elapsed, headers=received)


def post_json(url: str, payload: Mapping[str, Any], **options: Any) -> Answer:
    """POST ``payload`` as JSON (see :func:`request_json`)."""
    return request_json("POST", url, payload, **options)


def status_of(url: str, timeout: float = 2.0) -> int | None:
    """The status a GET of ``url`` answers with; None when nothing answers."""
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code)
    except OSError:
        return None
