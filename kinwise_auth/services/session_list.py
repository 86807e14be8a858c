"""What a signed-in user sees and does with their sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from .. import audit
from ..conf import auth_settings
from ..errors import ReauthenticationRequired, SessionNotFound
from ..models import Session
from .meta import RequestMeta
from .reauthentication import require_password
from .sessions import revoke_session, revoke_sessions

__all__ = [
    "SessionSummary",
    "list_sessions",
    "end_session",
    "reauthenticate",
    "revoke_other_sessions",
]


@dataclass(frozen=True)
class SessionSummary:
    """One live session as its owner sees it."""

    id: str
    device: str
    ip: str | None
    created_at: datetime
    last_used_at: datetime
    method: str
    current: bool


def list_sessions(*, user: AbstractBaseUser, current: Any) -> list[SessionSummary]:
    """The live sessions of ``user``, the most recently used first; ``current``
    is the caller's session id."""
    sessions = Session.objects.filter(user_id=user.pk, revoked_at=None).order_by(
        "-last_used_at", "-pk"
    )
    return [
        SessionSummary(
            id=str(session.public_id),
            device=session.device,
            ip=session.last_ip,
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            method=session.method,
            current=str(session.public_id) == str(current),
        )
        for session in sessions
    ]


def end_session(*, user: AbstractBaseUser, session_id: str, meta: RequestMeta) -> None:
    """Revoke ``user``'s live session ``session_id`` (the caller's own included).

    Raises :class:`SessionNotFound` for an id that is not a live session of the
    user's: another user's id looks exactly like an unknown one.
    """
    try:
        uuid.UUID(session_id)
    except ValueError:
        raise SessionNotFound() from None
    if not Session.objects.filter(
        public_id=session_id, user_id=user.pk, revoked_at=None
    ).exists():
        raise SessionNotFound()
    with transaction.atomic():
        revoke_session(session_id, reason="user")
        audit.record(
            "session_revoked", user=user, meta=meta, extra={"session": session_id}
        )


@sensitive_variables()
def reauthenticate(
    *, user: AbstractBaseUser, session_id: Any, password: str, meta: RequestMeta
) -> datetime:
    """Mark the caller's session reauthenticated by ``password``; return until
    when that lets it make sensitive changes.

    Raises :class:`InvalidCredentials` for a wrong password.
    """
    require_password(
        user,
        password,
        failed_event="reauthentication_failed",
        meta=meta,
        message=_("The password is not correct."),
    )
    now = timezone.now()
    Session.objects.filter(public_id=session_id, user_id=user.pk).update(
        reauthenticated_at=now
    )
    audit.record("reauthenticated", user=user, meta=meta)
    return now + auth_settings.REAUTHENTICATION_TIMEOUT


@sensitive_variables()
def revoke_other_sessions(
    *,
    user: AbstractBaseUser,
    session_id: Any,
    password: str | None,
    meta: RequestMeta,
) -> int:
    """Revoke every live session of ``user`` but the caller's; return how many.

    Needs ``password``, or the caller's session reauthenticated within
    ``REAUTHENTICATION_TIMEOUT``: raises :class:`ReauthenticationRequired`
    without either, :class:`InvalidCredentials` for a wrong password.
    """
    if password is not None:
        require_password(
            user,
            password,
            failed_event="sessions_revoke_failed",
            meta=meta,
            message=_("The password is not correct."),
        )
    elif not _recently_reauthenticated(user, session_id):
        raise ReauthenticationRequired()
    with transaction.atomic():
        others = Session.objects.filter(user_id=user.pk).exclude(public_id=session_id)
        revoked = revoke_sessions(others, reason="user")
        audit.record(
            "sessions_revoked", user=user, meta=meta, extra={"revoked": revoked}
        )
    return revoked


def _recently_reauthenticated(user: AbstractBaseUser, session_id: Any) -> bool:
    since = timezone.now() - auth_settings.REAUTHENTICATION_TIMEOUT
    return Session.objects.filter(
        public_id=session_id,
        user_id=user.pk,
        revoked_at=None,
        reauthenticated_at__gte=since,
    ).exists()
