"""Publishing an outbox row's id to the broker, within a bounded time.

The delivery task is addressed by its public name through the Celery app, so
this module imports nothing from :mod:`kinwise_auth.tasks`: the task sits on
the floor above and calls down.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import current_app

from .conf import auth_settings

__all__ = ["DELIVER_TASK", "publish"]

logger = logging.getLogger(__name__)

#: The delivery task's public (routable) name.
DELIVER_TASK = "kinwise_auth.tasks.deliver"

# One broker connection per process and thread, kept between publishes: opening
# one costs several times the outbox insert. Keyed by the broker, so a change of
# broker (or a fork) gets a fresh one.
_publisher = threading.local()


def _transport_options(driver: str, timeout: float) -> dict[str, float]:
    if driver == "redis":
        return {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if driver == "amqp":
        return {"read_timeout": timeout, "write_timeout": timeout}
    return {}


def _publish_connection(app: Any, timeout: float) -> Any:
    key = (os.getpid(), str(app.conf.broker_write_url or app.conf.broker_url), timeout)
    cached = getattr(_publisher, "entry", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    _drop_publish_connection()
    connection = app.connection_for_write(connect_timeout=timeout)
    connection.transport_options = {
        **(connection.transport_options or {}),
        **_transport_options(connection.transport.driver_type, timeout),
    }
    _publisher.entry = (key, connection)
    return connection


def _drop_publish_connection() -> None:
    cached = getattr(_publisher, "entry", None)
    _publisher.entry = None
    if cached is not None:
        try:
            cached[1].release()
        except Exception:  # already broken: nothing more to release
            logger.debug("kinwise_auth: closing a broken broker connection failed")


def publish(outbox_id: int) -> bool:
    """Send the delivery task for ``outbox_id`` to the broker, within a bounded time.

    A hung broker otherwise blocks a request for minutes even with
    ``broker_connection_timeout`` set, so this publishes over a connection of its
    own (kept for the next publish) with short socket timeouts and one retry.
    Returns False when the broker could not take the message, logged as one
    WARNING line (the traceback at DEBUG); the caller then leaves the row to the
    re-drive. With ``task_always_eager`` the task runs here.
    """
    timeout = float(auth_settings.PUBLISH_TIMEOUT)
    app = current_app
    try:
        if app.conf.task_always_eager:
            app.tasks[DELIVER_TASK].apply_async((outbox_id,))
            return True
        app.send_task(
            DELIVER_TASK,
            (outbox_id,),
            connection=_publish_connection(app, timeout),
            # A worker stuck in a send is stopped before its claim expires, so
            # the email it holds is never sent by two workers at once.
            time_limit=auth_settings.delivery_time_limit(),
            # As the task declares: no result backend subscription per publish.
            ignore_result=True,
            retry=True,
            retry_policy={
                "max_retries": 1,
                "interval_start": 0,
                "interval_step": 0.1,
                "interval_max": 0.1,
            },
        )
    except Exception as exc:
        _drop_publish_connection()
        # One line an operator can read in a flood of them: a broker outage makes
        # one per request. The chained traceback (kombu, redis-py) is for DEBUG.
        logger.warning(
            "kinwise_auth: could not publish outbox email %s (%s: %s); it stays "
            "pending for the re-drive",
            outbox_id,
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
        )
        logger.debug("kinwise_auth: publish of %s failed", outbox_id, exc_info=True)
        return False
    return True
