"""The one seam every email leaves through.

* :func:`queue` records the intent (an :class:`OutboxEmail` row, no secret) in the
  caller's transaction and publishes the row's id once that transaction commits.
* :func:`deliver`, run by the Celery task, claims the row, mints the secret the
  email carries (storing only its keyed hash), renders the templates and sends.

So a code or token never crosses the broker, a task result, the outbox or a log:
it exists in clear only in the email. Delivery is at least once: a row run again
after a lost worker mints a fresh secret that supersedes the one it minted before.
"""

from __future__ import annotations

import logging
import os
import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_variables

from . import crypto
from .conf import auth_settings
from .models import EmailIdentity, LinkToken, LoginCode, OutboxEmail
from .normalization import email_key_or_none

__all__ = [
    "TRANSIENT_ERRORS",
    "queue",
    "publish",
    "deliver",
    "release_for_retry",
    "mark_failed",
    "requeue",
    "requeue_unsent",
    "build_link",
    "site_name",
    "lifetime_phrase",
]

logger = logging.getLogger(__name__)

Kind = OutboxEmail.Kind
Status = OutboxEmail.Status

# Errors worth retrying: the SMTP server or the network, not our templates.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (smtplib.SMTPException, OSError)

_FINAL = (Status.SENT, Status.SKIPPED, Status.FAILED)


def queue(
    kind: str,
    *,
    recipient: str,
    user: Any | None = None,
    context: dict[str, Any] | None = None,
) -> OutboxEmail:
    """Record an email to send and publish it once the current transaction commits.

    ``context`` is stored as is: it must hold nothing secret. The publish happens
    in ``transaction.on_commit(..., robust=True)``: a rolled-back request sends
    nothing, and a broker that is down leaves the row pending for
    :func:`requeue_unsent` rather than failing the request.
    """
    row = OutboxEmail.objects.create(
        kind=kind, user=user, recipient=recipient, context=context or {}
    )
    transaction.on_commit(partial(publish, row.pk), robust=True)
    return row


def _transport_options(driver: str, timeout: float) -> dict[str, float]:
    if driver == "redis":
        return {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if driver == "amqp":
        return {"read_timeout": timeout, "write_timeout": timeout}
    return {}


# One broker connection per process and thread, kept between publishes: opening
# one costs several times the outbox insert. Keyed by the broker, so a change of
# broker (or a fork) gets a fresh one.
_publisher = threading.local()


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
    Returns False (and logs) when the broker could not take the message; the row
    then waits for the re-drive.
    """
    from .tasks import deliver as deliver_task

    timeout = float(auth_settings.PUBLISH_TIMEOUT)
    app = deliver_task.app
    try:
        if app.conf.task_always_eager:
            deliver_task.apply_async((outbox_id,))
            return True
        deliver_task.apply_async(  # type: ignore[call-arg]
            (outbox_id,),
            connection=_publish_connection(app, timeout),
            retry=True,
            retry_policy={
                "max_retries": 1,
                "interval_start": 0,
                "interval_step": 0.1,
                "interval_max": 0.1,
            },
        )
    except Exception:
        _drop_publish_connection()
        logger.warning(
            "kinwise_auth: could not publish outbox email %s; it stays pending "
            "for the re-drive",
            outbox_id,
            exc_info=True,
        )
        return False
    return True


def _claim(outbox_id: int) -> OutboxEmail | None:
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
        row.claimed_until = now + auth_settings.OUTBOX_CLAIM_TIMEOUT
        row.attempts += 1
        row.save(update_fields=["status", "claimed_until", "attempts"])
    return row


def _finish(outbox_id: int, status: str, **fields: Any) -> None:
    OutboxEmail.objects.filter(pk=outbox_id).update(
        status=status, claimed_until=None, **fields
    )


@sensitive_variables()
def deliver(outbox_id: int) -> str:
    """Claim, mint, render and send one outbox email; return the row's new status.

    A row that is already final, or claimed by another worker, is left alone
    (returns ``"not_claimed"``). Errors from sending propagate with the row still
    claimed: the task decides between :func:`release_for_retry` and
    :func:`mark_failed`.
    """
    row = _claim(outbox_id)
    if row is None:
        return "not_claimed"
    message = BUILDERS[row.kind](row)
    if message is None:
        _finish(row.pk, Status.SKIPPED)
        return Status.SKIPPED
    message.send()
    _finish(row.pk, Status.SENT, sent_at=timezone.now(), last_error="")
    return Status.SENT


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


def release_for_retry(outbox_id: int, exc: BaseException, countdown: float) -> None:
    """Release the row after a transient failure; the task retries in ``countdown``."""
    OutboxEmail.objects.filter(pk=outbox_id, status=Status.SENDING).update(
        status=Status.PENDING,
        claimed_until=None,
        available_at=timezone.now() + timedelta(seconds=countdown),
        last_error=_error_text(exc),
    )


def mark_failed(outbox_id: int, exc: BaseException) -> None:
    """Record that the row's retries ran out: status failed, log and audit."""
    from . import audit

    _finish(outbox_id, Status.FAILED, last_error=_error_text(exc))
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
    return sum(publish(pk) for pk in outbox_ids)


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
    return sum(publish(pk) for pk in ids)


# --- building messages --------------------------------------------------------


@dataclass
class _Email:
    template: str
    recipient: str
    context: dict[str, Any] = field(default_factory=dict)


def site_name() -> str:
    """``SITE_NAME``; unset, the current Site's name where the sites framework is
    installed and ``SITE_ID`` set, else ``FRONTEND_URL``'s host: an adopter's
    emails never carry another product's name."""
    configured = auth_settings.SITE_NAME
    if configured:
        return str(configured)
    if apps.is_installed("django.contrib.sites") and getattr(settings, "SITE_ID", None):
        from django.contrib.sites.models import Site

        try:
            return str(Site.objects.get_current().name)
        except Site.DoesNotExist:
            pass
    return urlsplit(str(auth_settings.FRONTEND_URL or "")).hostname or ""


def build_link(path_template: str, token: str) -> str:
    """``FRONTEND_URL`` + the configured path, never the request's Host header."""
    base = str(auth_settings.FRONTEND_URL).rstrip("/")
    return base + path_template.format(token=token)


@sensitive_variables()
def _render(email: _Email, user: Any | None) -> EmailMultiAlternatives:
    context = {
        "site_name": site_name(),
        "frontend_url": auth_settings.FRONTEND_URL,
        "user": user,
        "email": email.recipient,
        **email.context,
    }
    base = f"kinwise_auth/email/{email.template}"
    # A subject is one line: no header injection through a template or a name.
    subject = " ".join(render_to_string(f"{base}_subject.txt", context).split())
    text = render_to_string(f"{base}.txt", context)
    html = render_to_string(f"{base}.html", context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=auth_settings.EMAIL_FROM or settings.DEFAULT_FROM_EMAIL,
        to=[email.recipient],
    )
    message.attach_alternative(html, "text/html")
    return message


def _identity_at(row: OutboxEmail) -> EmailIdentity | None:
    """The row's user's identity, if the row is still addressed to it.

    A secret goes only to the account's current address: a reset asked for
    before the user moved to another address must not reach the old one.
    """
    if row.user is None:
        return None
    identity = EmailIdentity.objects.filter(user=row.user).first()
    if identity is None or identity.email_normalized != email_key_or_none(
        row.recipient
    ):
        return None
    identity.user = row.user  # the row's, already loaded
    return identity


@sensitive_variables()
def _mint_link_token(
    row: OutboxEmail, user: Any, purpose: str, lifetime: timedelta, email: str = ""
) -> str:
    """Mint a link token for ``user``, sent by ``row``, superseding live ones."""
    token = crypto.new_link_token()
    now = timezone.now()
    with transaction.atomic():
        # Locking the identity serialises minting per user, so two emails delivered
        # at once cannot both leave a live token behind.
        EmailIdentity.objects.select_for_update().filter(user=user).first()
        LinkToken.objects.filter(user=user, purpose=purpose).supersede()
        LinkToken.objects.create(
            user=user,
            purpose=purpose,
            token_hash=crypto.keyed_hash(token),
            email=email,
            outbox=row,
            expires_at=now + lifetime,
        )
    return token


def _hours(lifetime: timedelta) -> float:
    return round(lifetime.total_seconds() / 3600, 1)


def lifetime_phrase(lifetime: timedelta) -> str:
    """``lifetime`` as the emails say it, with real plurals: "1 hour",
    "24 hours", "90 minutes", "10 minutes" (whole hours as hours)."""
    minutes = max(1, round(lifetime.total_seconds() / 60))
    if minutes % 60 == 0:
        hours = minutes // 60
        return ngettext("%(count)d hour", "%(count)d hours", hours) % {"count": hours}
    return ngettext("%(count)d minute", "%(count)d minutes", minutes) % {
        "count": minutes
    }


def _verification(row: OutboxEmail) -> EmailMultiAlternatives | None:
    if row.user is None:
        return None
    identity = _identity_at(row)
    if identity is None or identity.is_verified:
        return None  # nothing to verify any more: the address is proven or gone
    lifetime = auth_settings.EMAIL_VERIFICATION_LIFETIME
    token = _mint_link_token(row, row.user, LinkToken.Purpose.VERIFY_EMAIL, lifetime)
    context = {
        "verification_url": build_link(auth_settings.VERIFY_EMAIL_PATH, token),
        "expires_hours": _hours(lifetime),
        "expires_in": lifetime_phrase(lifetime),
        # Decided now, not when queued: a resend, or an email delivered late,
        # warns as much as the replacing registration's own email.
        "replaces_registration": identity.registrations > 1,
    }
    return _render(_Email("verify_email", row.recipient, context), row.user)


def _welcome(row: OutboxEmail) -> EmailMultiAlternatives | None:
    if row.user is None or not row.user.is_active:
        return None
    return _render(_Email("welcome", row.recipient), row.user)


@sensitive_variables()
def _login_code(row: OutboxEmail) -> EmailMultiAlternatives | None:
    identity = _identity_at(row)
    if identity is None or not identity.can_sign_in:
        return None  # unknown, pending or deactivated: no code, same answer
    user = identity.user
    lifetime = auth_settings.LOGIN_CODE_LIFETIME
    code = crypto.new_login_code(int(auth_settings.LOGIN_CODE_LENGTH))
    now = timezone.now()
    with transaction.atomic():
        # Serialise minting per user: one live code at a time, the newest.
        EmailIdentity.objects.select_for_update().filter(user=user).first()
        LoginCode.objects.filter(user=user).supersede()
        LoginCode.objects.create(
            user=user,
            code_hash=crypto.keyed_hash(crypto.login_code_message(user.pk, code)),
            outbox=row,
            ip=row.context.get("ip"),
            expires_at=now + lifetime,
        )
    context = {
        "code": code,
        "expires_minutes": round(lifetime.total_seconds() / 60),
        "expires_in": lifetime_phrase(lifetime),
    }
    return _render(_Email("login_code", row.recipient, context), user)


@sensitive_variables()
def _password_reset(row: OutboxEmail) -> EmailMultiAlternatives | None:
    user = row.user
    if user is None:
        return None
    identity = _identity_at(row)
    if identity is None or identity.is_deactivated:
        return None  # unknown, or deactivated by an admin: no link
    lifetime = auth_settings.PASSWORD_RESET_LIFETIME
    token = _mint_link_token(row, user, LinkToken.Purpose.PASSWORD_RESET, lifetime)
    context = {
        "reset_url": build_link(auth_settings.PASSWORD_RESET_PATH, token),
        "expires_hours": _hours(lifetime),
        "expires_in": lifetime_phrase(lifetime),
    }
    return _render(_Email("password_reset", row.recipient, context), user)


@sensitive_variables()
def _email_change(row: OutboxEmail) -> EmailMultiAlternatives | None:
    user = row.user
    new_email = str(row.context.get("new_email", ""))
    if user is None or not user.is_active or not new_email:
        return None
    lifetime = auth_settings.EMAIL_CHANGE_LIFETIME
    token = _mint_link_token(
        row, user, LinkToken.Purpose.EMAIL_CHANGE, lifetime, email=new_email
    )
    context = {
        "confirm_url": build_link(auth_settings.EMAIL_CHANGE_PATH, token),
        "new_email": new_email,
        "expires_hours": _hours(lifetime),
        "expires_in": lifetime_phrase(lifetime),
    }
    return _render(_Email("email_change", row.recipient, context), user)


def _notice(template: str) -> Callable[[OutboxEmail], EmailMultiAlternatives | None]:
    """A message with no secret, sent whatever became of the user since."""

    def build(row: OutboxEmail) -> EmailMultiAlternatives | None:
        return _render(_Email(template, row.recipient, dict(row.context)), row.user)

    return build


BUILDERS: dict[str, Callable[[OutboxEmail], EmailMultiAlternatives | None]] = {
    Kind.VERIFY_EMAIL: _verification,
    Kind.WELCOME: _welcome,
    Kind.ACCOUNT_EXISTS: _notice("account_exists"),
    Kind.LOGIN_CODE: _login_code,
    Kind.PASSWORD_RESET: _password_reset,
    Kind.PASSWORD_CHANGED: _notice("password_changed"),
    Kind.EMAIL_CHANGE: _email_change,
    Kind.EMAIL_CHANGED: _notice("email_changed"),
    Kind.GOODBYE: _notice("goodbye"),
    Kind.SIGN_IN_ATTEMPTS: _notice("sign_in_attempts"),
}
