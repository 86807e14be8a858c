"""The outbox: the intent to send an email, and its state until it is sent.

* :func:`queue` records the intent (an :class:`OutboxEmail` row, no secret) in
  the caller's transaction and publishes the row's id once that commits.
* :func:`claim`, :func:`finish` and :func:`record_failure` move a row through
  a delivery (run by the task);
  :func:`requeue` and :func:`requeue_unsent` publish rows again.

Delivery is at least once: a row run again after a lost worker is claimed again
once its claim expires (``OUTBOX_CLAIM_TIMEOUT``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any, cast

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import audit
from .conf import auth_settings
from .models import OutboxEmail
from .publishing import publish

__all__ = [
    "queue",
    "claim",
    "still_claimed",
    "finish",
    "record_failure",
    "requeue",
    "requeue_unsent",
]

logger = logging.getLogger(__name__)

Status = OutboxEmail.Status

_FINAL = (Status.SENT, Status.SKIPPED, Status.FAILED)


def queue(
    kind: str,
    *,
    recipient: str,
    user: AbstractBaseUser | None = None,
    context: dict[str, Any] | None = None,
) -> OutboxEmail:
    """Record an email to send and publish it once the current transaction commits.

    ``context`` is stored as is: it must hold nothing secret. The publish happens
    in ``transaction.on_commit(..., robust=True)``: a rolled-back request sends
    nothing, and a broker that is down leaves the row pending for
    :func:`requeue_unsent` rather than failing the request.
    """
    row = OutboxEmail.objects.create(
        kind=kind,
        user=cast(Any, user),  # the host's user model; django-stubs say auth.User
        recipient=recipient,
        context=context or {},
    )
    transaction.on_commit(partial(_publish, row.pk), robust=True)
    return row


def _publish(outbox_id: int) -> bool:
    """Publish the row; a publish known to have failed makes it due at once.

    The re-drive's age threshold (``OUTBOX_REDRIVE_AFTER``) is for rows whose
    publish may still be in flight. This one's is lost: dating it back by the
    threshold lets the next re-drive take it, seconds after the broker returns.
    """
    if publish(outbox_id):
        return True
    OutboxEmail.objects.filter(pk=outbox_id, status=Status.PENDING).update(
        available_at=timezone.now() - auth_settings.OUTBOX_REDRIVE_AFTER
    )
    return False


def claim(outbox_id: int) -> OutboxEmail | None:
    """Take the row for one delivery attempt, with its user; None when it is
    final already, or claimed by another worker whose claim has not expired."""
    now = timezone.now()
    with transaction.atomic():
        row = (
            OutboxEmail.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk=outbox_id)
            .first()
        )
        if row is None or row.status in _FINAL:
            return None
        if (
            row.status == Status.SENDING
            and row.claimed_until
            and row.claimed_until > now
        ):
            return None  # another worker holds it
        row.status = Status.SENDING
        row.claimed_until = now + auth_settings.claim_timeout()
        row.attempts += 1
        row.save(update_fields=["status", "claimed_until", "attempts"])
    return row


def still_claimed(row: OutboxEmail) -> bool:
    """Lock the row; whether the claim :func:`claim` gave ``row`` still holds.

    Call inside ``transaction.atomic()``, before minting: a worker that stalled
    past its claim finds another's attempt there and mints nothing, and a worker
    taking the row over waits on the lock until this one is done.
    """
    return (
        OutboxEmail.objects.select_for_update()
        .filter(
            pk=row.pk,
            status=Status.SENDING,
            attempts=row.attempts,
            claimed_until__gt=timezone.now(),
        )
        .first()
        is not None
    )


def finish(outbox_id: int, status: str, **fields: Any) -> None:
    """Record the end of a claimed delivery: ``status`` and the given fields."""
    OutboxEmail.objects.filter(pk=outbox_id).update(
        status=status, claimed_until=None, **fields
    )


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


def record_failure(
    outbox_id: int, exc: BaseException, *, retry_in: float | None
) -> None:
    """Record a failed delivery attempt of the claimed row.

    With ``retry_in`` (seconds), the row is released, pending again from then, for
    the task's retry. Without, it is final: status failed, logged and audited.
    """
    if retry_in is not None:
        OutboxEmail.objects.filter(pk=outbox_id, status=Status.SENDING).update(
            status=Status.PENDING,
            claimed_until=None,
            available_at=timezone.now() + timedelta(seconds=retry_in),
            last_error=_error_text(exc),
        )
        return
    finish(outbox_id, Status.FAILED, last_error=_error_text(exc))
    row = OutboxEmail.objects.filter(pk=outbox_id).first()
    logger.error(
        "kinwise_auth: outbox email %s (%s) failed: %s",
        outbox_id,
        row.kind if row else "?",
        _error_text(exc),
    )
    audit.record(
        "email_delivery_failed",
        user=row.user if row else None,
        extra={
            "outbox_id": outbox_id,
            "kind": row.kind if row else "",
            "error": _error_text(exc),
        },
    )


def requeue(outbox_ids: list[int]) -> int:
    """Make the given rows pending again and publish them; return how many published."""
    OutboxEmail.objects.filter(pk__in=outbox_ids).update(
        status=Status.PENDING, claimed_until=None, available_at=timezone.now()
    )
    return sum(_publish(pk) for pk in outbox_ids)


def requeue_unsent(batch: int | None = None) -> int:
    """Re-publish rows left pending or whose claim expired; return how many.

    Safe to run from several processes at once: rows are picked with
    ``SKIP LOCKED`` and moved out of the due window before the lock is released.
    """
    now = timezone.now()
    due = Q(
        status=Status.PENDING,
        available_at__lte=now - auth_settings.OUTBOX_REDRIVE_AFTER,
    )
    stale = Q(status=Status.SENDING, claimed_until__lt=now)
    with transaction.atomic():
        ids = list(
            OutboxEmail.objects.select_for_update(skip_locked=True)
            .filter(due | stale)
            .order_by("available_at")
            .values_list("pk", flat=True)[: batch or auth_settings.OUTBOX_REDRIVE_BATCH]
        )
        OutboxEmail.objects.filter(pk__in=ids).update(
            status=Status.PENDING, claimed_until=None, available_at=now
        )
    return sum(_publish(pk) for pk in ids)
