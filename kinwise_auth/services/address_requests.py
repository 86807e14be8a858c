"""Requests made for an address, answered the same whoever holds it."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .. import audit, outbox
from .identities import find_identity
from .meta import RequestMeta

__all__ = ["queue_for_address"]


def queue_for_address(
    kind: str,
    *,
    email: str,
    event: str,
    meta: RequestMeta,
    context: dict[str, Any] | None = None,
) -> None:
    """Queue a ``kind`` email for ``email`` and audit ``event``, whoever holds it.

    Security rule 5: the request does the same work for every address — one
    lookup, one outbox row, one audit row, one publish — so neither the answer
    nor its timing says whether an account exists or what state it is in. The
    kind's recipient rule decides at delivery whether anything is sent
    (:mod:`kinwise_auth.services.secrets.recipients`).
    """
    with transaction.atomic():
        identity = find_identity(email)
        user = identity.user if identity is not None else None
        outbox.queue(
            kind,
            user=user,
            recipient=identity.email if identity is not None else email,
            context=context,
        )
        audit.record(event, user=user, meta=meta)
