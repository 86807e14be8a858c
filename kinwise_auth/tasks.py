"""Celery tasks. Only an outbox row's id ever crosses the broker.

Names are stable (``kinwise_auth.tasks.*``) so a host can route them to a queue.
"""

from __future__ import annotations

import logging
import random

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval

from . import emails, maintenance, outbox
from .conf import auth_settings
from .publishing import DELIVER_TASK

__all__ = ["deliver", "requeue_unsent", "purge_expired"]

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name=DELIVER_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,  # bounded below by DELIVERY_MAX_RETRIES, read at call time
)
def deliver(self, outbox_id: int) -> None:  # type: ignore[no-untyped-def]
    """Send outbox email ``outbox_id``; retry SMTP and network errors with backoff.

    The backoff is exponential (``DELIVERY_RETRY_BACKOFF`` × 2^n, capped by
    ``DELIVERY_RETRY_BACKOFF_MAX``, which must stay below the broker's visibility
    timeout), with jitter over its upper half. When retries run out the row is
    marked failed and audited.
    """
    try:
        emails.send(outbox_id)
    except Exception as exc:
        # Only SMTP and network errors are worth a retry; a template or data
        # error would fail the same way again.
        transient = isinstance(exc, emails.TRANSIENT_ERRORS)
        retry_in = None
        if transient and self.request.retries < auth_settings.DELIVERY_MAX_RETRIES:
            retry_in = _backoff(self.request.retries)
        outbox.record_failure(outbox_id, exc, retry_in=retry_in)
        if retry_in is not None:
            logger.warning(
                "kinwise_auth: outbox email %s not sent (%s); retry in %ss",
                outbox_id,
                type(exc).__name__,
                retry_in,
            )
            raise self.retry(countdown=retry_in) from None
        if not transient:
            raise


def _backoff(retries: int) -> float:
    ceiling = get_exponential_backoff_interval(
        factor=auth_settings.DELIVERY_RETRY_BACKOFF,
        retries=retries,
        maximum=auth_settings.DELIVERY_RETRY_BACKOFF_MAX,
    )
    # "Equal" jitter: at least half the step, so a failing server is never
    # retried at once, yet workers that failed together spread out.
    return round(ceiling / 2 + random.uniform(0, ceiling / 2), 3)


@shared_task(name="kinwise_auth.tasks.requeue_unsent", ignore_result=True)
def requeue_unsent() -> int:
    """Re-publish outbox rows left pending (broker was down) or whose claim expired."""
    return outbox.requeue_unsent()


@shared_task(name="kinwise_auth.tasks.purge_expired", ignore_result=True)
def purge_expired() -> dict[str, int]:
    """Delete expired link tokens, old outbox rows and audit rows past retention."""
    return maintenance.purge_expired()
