"""Housekeeping: what the purge task and command delete, in bounded batches."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db.models import Model, ProtectedError, QuerySet, RestrictedError
from django.utils import timezone

from .conf import auth_settings
from .models import (
    AuthEvent,
    LinkToken,
    LoginCode,
    MfaChallenge,
    OutboxEmail,
    PasskeyChallenge,
)

__all__ = ["purge_expired"]

logger = logging.getLogger(__name__)


def _delete_in_batches(queryset: QuerySet[Model], batch: int) -> int:
    """Delete what ``queryset`` selects, ``batch`` rows at a time; return how many
    of its own rows went (rows that cascade with them are not counted).

    Short transactions: each batch locks only its own rows, briefly. Each delete
    re-applies the queryset's conditions, so a row that stopped matching since it
    was picked (a pending account registered again) stays. A row whose deletion
    a foreign key protects is skipped and logged.
    """
    label = queryset.model._meta.label
    total, after = 0, None
    while True:
        window = queryset.order_by("pk")
        if after is not None:
            window = window.filter(pk__gt=after)
        pks = list(window.values_list("pk", flat=True)[:batch])
        if not pks:
            return total
        after = pks[-1]
        try:
            _, per_model = queryset.filter(pk__in=pks).delete()
        except (ProtectedError, RestrictedError):
            per_model = {}
            for pk in pks:
                try:
                    per_model_one = queryset.filter(pk=pk).delete()[1]
                except (ProtectedError, RestrictedError):
                    logger.warning(
                        "kinwise_auth: purge skipped protected %s %s", label, pk
                    )
                    continue
                per_model[label] = per_model.get(label, 0) + per_model_one.get(label, 0)
        total += per_model.get(label, 0)


def purge_expired() -> dict[str, int]:
    """Delete expired link tokens, codes, sign-in and passkey challenges,
    finished outbox rows, audit rows past retention and pending accounts past
    ``PENDING_ACCOUNT_LIFETIME``.

    Outbox rows hold addresses, so they go once ``OUTBOX_RETENTION`` has passed;
    failed rows too, after the same time for an operator to see them. A pending
    account (never verified, inactive) is counted from its latest registration;
    deleting it frees its address.
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
        "mfa_challenges": _delete_in_batches(
            MfaChallenge.objects.filter(expires_at__lt=now), batch
        ),
        "passkey_challenges": _delete_in_batches(
            PasskeyChallenge.objects.filter(expires_at__lt=now), batch
        ),
        "outbox_emails": _delete_in_batches(
            OutboxEmail.objects.filter(
                status__in=finished,
                created_at__lt=now - auth_settings.OUTBOX_RETENTION,
            ),
            batch,
        ),
        "pending_accounts": _delete_in_batches(
            get_user_model()._default_manager.filter(
                is_active=False,
                kinwise_identity__verified_at=None,
                kinwise_identity__created_at__lt=now
                - auth_settings.PENDING_ACCOUNT_LIFETIME,
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
