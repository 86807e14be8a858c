"""Housekeeping: what the purge task and command delete, in bounded batches."""

from __future__ import annotations

from django.db.models import Model, QuerySet
from django.utils import timezone

from .conf import auth_settings
from .models import AuthEvent, LinkToken, LoginCode, OutboxEmail

__all__ = ["purge_expired"]


def _delete_in_batches(queryset: QuerySet[Model], batch: int) -> int:
    # Short transactions: each batch locks only its own rows, briefly.
    total = 0
    while True:
        pks = list(queryset.values_list("pk", flat=True)[:batch])
        if not pks:
            return total
        deleted, _ = queryset.model._default_manager.filter(pk__in=pks).delete()
        total += deleted


def purge_expired() -> dict[str, int]:
    """Delete expired link tokens, finished outbox rows and audit rows past retention.

    Outbox rows hold addresses, so they go once ``OUTBOX_RETENTION`` has passed;
    failed rows too, after the same time for an operator to see them.
    """
    now = timezone.now()
    batch = auth_settings.PURGE_BATCH
    finished = [
        OutboxEmail.Status.SENT,
        OutboxEmail.Status.SKIPPED,
        OutboxEmail.Status.FAILED,
    ]
    return {
        "link_tokens": _delete_in_batches(
            LinkToken.objects.filter(expires_at__lt=now), batch
        ),
        "login_codes": _delete_in_batches(
            LoginCode.objects.filter(expires_at__lt=now), batch
        ),
        "outbox_emails": _delete_in_batches(
            OutboxEmail.objects.filter(
                status__in=finished,
                created_at__lt=now - auth_settings.OUTBOX_RETENTION,
            ),
            batch,
        ),
        "auth_events": _delete_in_batches(
            AuthEvent.objects.filter(
                created_at__lt=now - auth_settings.AUDIT_RETENTION
            ),
            batch,
        ),
    }
