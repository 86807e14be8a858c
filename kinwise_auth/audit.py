"""The single writer of :class:`~kinwise_auth.models.AuthEvent`."""

from __future__ import annotations

from typing import Any, Protocol

from django.contrib.auth import get_user_model

from .conf import auth_settings
from .models import AuthEvent
from .signals import EVENT_SIGNALS


class RequestDetails(Protocol):
    """What a record keeps of the request (``services.RequestMeta``)."""

    @property
    def ip(self) -> str | None: ...

    @property
    def user_agent(self) -> str: ...


__all__ = ["record"]


def record(
    event_type: str,
    *,
    user: Any,
    meta: RequestDetails | None = None,
    extra: dict[str, Any] | None = None,
    store: bool = True,
) -> AuthEvent | None:
    """Write an ``AuthEvent``, send its signal and call the host's audit hook.

    ``store=False`` skips the row (events too frequent to keep, such as a
    refresh token's rotation); the signal and the hook still run.
    ``extra`` must never carry a code, token or password. The hook
    (``AUDIT_CALLABLE``) is called with the keyword arguments ``event_type``,
    ``user``, ``ip``, ``user_agent`` and ``extra``, inside the caller's transaction.
    """
    ip = meta.ip if meta else None
    user_agent = meta.user_agent if meta else ""
    extra = extra or {}
    event = None
    if store:
        event = AuthEvent.objects.create(
            event_type=event_type, user=user, ip=ip, user_agent=user_agent, extra=extra
        )
    signal = EVENT_SIGNALS.get(event_type)
    if signal is not None:
        signal.send(
            sender=get_user_model(),
            user=user,
            ip=ip,
            user_agent=user_agent,
            extra=extra,
        )
    hook = auth_settings.AUDIT_CALLABLE
    if hook is not None:
        hook(
            event_type=event_type, user=user, ip=ip, user_agent=user_agent, extra=extra
        )
    return event
