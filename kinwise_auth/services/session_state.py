"""Whether a session is revoked, answered from the shared cache.

Every request with an access token asks, so the answer costs one cache read.
A revocation writes "revoked" (after its transaction commits) for the access
tokens' lifetime; a miss is answered from the database (one indexed read) and
remembered as "live" for a minute with ``cache.add``, which never overwrites a
"revoked" written meanwhile. When the cache fails, the database answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from functools import partial
from typing import Any

from django.core.cache import caches
from django.db import transaction
from rest_framework_simplejwt import settings as jwt_settings

from ..models import Session
from ..ratelimit import cache_failed, note_cache_failure

__all__ = ["is_revoked", "remember_live", "remember_revoked"]

logger = logging.getLogger(__name__)

REVOKED = "revoked"
LIVE = "live"
LIVE_FOR = 60  # seconds a "live" answer is trusted: bounds a lost "revoked" write


def _cache() -> Any:
    from django.conf import settings

    return caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]


def _key(sid: Any) -> str:
    return f"kinwise_auth:session:{sid}"


def _revoked_for() -> int:
    lifetime: timedelta = jwt_settings.api_settings.ACCESS_TOKEN_LIFETIME
    return max(1, int(lifetime.total_seconds()) + 1)


def is_revoked(sid: Any) -> bool:
    """Whether the session ``sid`` (a token's claim) is revoked or unknown."""
    cached = None
    if not cache_failed():
        try:
            cached = _cache().get(_key(sid))
        except Exception:
            note_cache_failure()
            logger.warning("kinwise_auth: session cache failed; asking the database")
    if cached in (REVOKED, LIVE):
        return bool(cached == REVOKED)
    live = Session.objects.filter(public_id=sid, revoked_at=None).exists()
    if not cache_failed():
        _add(_key(sid), LIVE if live else REVOKED)
    return not live


def remember_live(sid: Any) -> None:
    """Once the current transaction commits, mark the new session ``sid`` live,
    so the first requests of a sign-in cost no database read."""
    if not cache_failed():
        transaction.on_commit(partial(_add, _key(sid), LIVE), robust=True)


def _add(key: str, value: str) -> None:
    """``cache.add``: never overwrites a "revoked" written meanwhile."""
    try:
        _cache().add(key, value, LIVE_FOR)
    except Exception:
        note_cache_failure()  # answered anyway; the next request asks again


def remember_revoked(sids: Iterable[Any]) -> None:
    """Once the current transaction commits, mark ``sids`` revoked in the cache."""
    keys = {_key(sid): REVOKED for sid in sids}
    if keys:
        transaction.on_commit(partial(_write, keys), robust=True)


def _write(keys: dict[str, str]) -> None:
    try:
        if cache_failed():
            raise ConnectionError("the cache failed earlier in this request")
        _cache().set_many(keys, _revoked_for())
    except Exception:
        note_cache_failure()
        # The "live" entries expire within LIVE_FOR; until then the access
        # tokens of these sessions may still be accepted.
        logger.warning(
            "kinwise_auth: could not mark %d revoked session(s) in the cache",
            len(keys),
        )
