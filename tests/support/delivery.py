"""The outbox as a worker delivers it: at rest, or failed for a recipient."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kinwise_auth.models import OutboxEmail

from .brokers import broker_backlog
from .processes import LoggedProcess
from .waiting import wait_until

__all__ = ["FINAL", "SETTLE_TIMEOUT", "fail_on_failed_delivery", "wait_until_settled"]

FINAL = (OutboxEmail.Status.SENT, OutboxEmail.Status.SKIPPED, OutboxEmail.Status.FAILED)
SETTLE_TIMEOUT = 20.0  # for every outbox row to be final and the broker empty


def fail_on_failed_delivery(
    worker: LoggedProcess, *recipients: str
) -> Callable[[], None]:
    """A poll check: fail at once if the worker died or gave up on a row (to one
    of ``recipients``, when given)."""

    def check() -> None:
        worker.assert_alive()
        failed = OutboxEmail.objects.filter(status=OutboxEmail.Status.FAILED)
        if recipients:
            failed = failed.filter(recipient__in=recipients)
        found = list(failed.values_list("recipient", "kind", "last_error"))
        if found:
            pytest.fail(f"the worker could not deliver: {found}")

    return check


def wait_until_settled(
    *,
    broker_url: str | None = None,
    check: Callable[[], None] | None = None,
    details: Callable[[], str] | None = None,
    timeout: float = SETTLE_TIMEOUT,
) -> None:
    """Every outbox row final and, with ``broker_url``, no message queued or
    unacknowledged there: what a test asserts then is the state at rest, not a
    task half done (or a retry due)."""

    def backlog() -> int:
        return 0 if broker_url is None else broker_backlog(broker_url)

    def settled() -> bool:
        busy = OutboxEmail.objects.exclude(status__in=FINAL).exists()
        return not busy and backlog() == 0

    def explain() -> str:
        rows = list(OutboxEmail.objects.values_list("pk", "kind", "status"))
        text = f"outbox rows: {rows}; broker backlog: {backlog()}"
        return text + (f"\n{details()}" if details is not None else "")

    wait_until(
        settled,
        timeout=timeout,
        what="the outbox (and the broker) at rest",
        check=check,
        details=explain,
    )
