"""The emails: one builder per kind, their context, rendering and sending.

:func:`send` is what the delivery task runs for one outbox row: claim it
(:mod:`kinwise_auth.outbox`), ask the kind's recipient rule whether it still
goes out (:mod:`kinwise_auth.services.secrets.recipients`), mint the secret it
carries (:mod:`kinwise_auth.services.secrets`, only the keyed hash is stored),
render the templates and send. So a code or token never crosses the broker, a
task result, the outbox or a log: it exists in clear only in the email. A row
run again after a lost worker mints a fresh secret that supersedes the one it
minted before.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_variables

from . import outbox
from .conf import auth_settings
from .models import LinkToken, LoginCode, OutboxEmail, Session
from .services import secrets
from .services.secrets import recipients
from .site import site_name

__all__ = [
    "TRANSIENT_ERRORS",
    "BUILDERS",
    "send",
    "build_link",
    "site_name",
    "lifetime_phrase",
]

Kind = OutboxEmail.Kind
Status = OutboxEmail.Status
Purpose = LinkToken.Purpose

# Errors worth retrying: the SMTP server or the network, not our templates.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (smtplib.SMTPException, OSError)


@sensitive_variables()
def send(outbox_id: int) -> OutboxEmail.Status | None:
    """Claim, build and send one outbox email; return the row's new status.

    None when the row was not claimed (already final, or held by another
    worker), or when this worker's claim expired before it minted.
    Errors from sending propagate with the row still claimed: the task records
    them (:func:`~kinwise_auth.outbox.record_failure`).
    """
    row = outbox.claim(outbox_id)
    if row is None:
        return None
    return _send_claimed(row)


@sensitive_variables()
def _send_claimed(row: OutboxEmail) -> OutboxEmail.Status | None:
    with transaction.atomic():
        if not outbox.still_claimed(row):
            return None  # this worker stalled past its claim; another took over
        message = BUILDERS[row.kind](row)
    if message is None:
        outbox.finish(row.pk, Status.SKIPPED)
        return Status.SKIPPED
    message.send()
    outbox.finish(row.pk, Status.SENT, sent_at=timezone.now(), last_error="")
    return Status.SENT


@dataclass
class _Email:
    template: str
    recipient: str
    context: dict[str, Any] = field(default_factory=dict)


def build_link(path_template: str, token: str) -> str:
    """``FRONTEND_URL`` + the configured path, never the request's Host header."""
    base = str(auth_settings.FRONTEND_URL).rstrip("/")
    return base + path_template.format(token=token)


@sensitive_variables()
def _render(email: _Email, user: AbstractBaseUser | None) -> EmailMultiAlternatives:
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


@sensitive_variables()
def _with_link(
    row: OutboxEmail,
    user: AbstractBaseUser,
    purpose: str,
    *,
    email: str = "",
    session: Session | None = None,
) -> dict[str, Any]:
    """Mint a ``purpose`` link for ``user``; the context that shows it."""
    token = secrets.mint_link(
        user=user, purpose=purpose, outbox=row, email=email, session=session
    )
    url_name, path_setting = _LINKS[purpose]
    lifetime = secrets.links.lifetime(purpose)
    return {
        url_name: build_link(getattr(auth_settings, path_setting), token),
        "expires_hours": _hours(lifetime),
        "expires_in": lifetime_phrase(lifetime),
    }


# Each link's template variable, and the setting of its frontend path.
_LINKS: dict[str, tuple[str, str]] = {
    Purpose.VERIFY_EMAIL: ("verification_url", "VERIFY_EMAIL_PATH"),
    Purpose.PASSWORD_RESET: ("reset_url", "PASSWORD_RESET_PATH"),
    Purpose.EMAIL_CHANGE: ("confirm_url", "EMAIL_CHANGE_PATH"),
    Purpose.SESSION_REVOKE: ("revoke_url", "SESSION_REVOKE_PATH"),
}


@sensitive_variables()
def _verification(row: OutboxEmail) -> EmailMultiAlternatives | None:
    identity = recipients.verification_recipient(row)
    if identity is None:
        return None
    context = _with_link(row, identity.user, Purpose.VERIFY_EMAIL)
    # Decided now, not when queued: a resend, or an email delivered late, warns
    # as much as the replacing registration's own email.
    context["replaces_registration"] = identity.registrations > 1
    return _render(_Email("verify_email", row.recipient, context), identity.user)


def _welcome(row: OutboxEmail) -> EmailMultiAlternatives | None:
    user = recipients.welcome_recipient(row)
    if user is None:
        return None
    return _render(_Email("welcome", row.recipient), user)


@sensitive_variables()
def _login_code(row: OutboxEmail) -> EmailMultiAlternatives | None:
    identity = recipients.login_code_recipient(row)
    if identity is None:
        return None  # unknown, pending or deactivated: no code, same answer
    code = secrets.mint_login_code(
        user=identity.user, outbox=row, ip=row.context.get("ip")
    )
    lifetime = auth_settings.LOGIN_CODE_LIFETIME
    context = {
        "code": code,
        "expires_minutes": round(lifetime.total_seconds() / 60),
        "expires_in": lifetime_phrase(lifetime),
    }
    return _render(_Email("login_code", row.recipient, context), identity.user)


@sensitive_variables()
def _reauthentication_code(row: OutboxEmail) -> EmailMultiAlternatives | None:
    identity = recipients.login_code_recipient(row)
    if identity is None:
        return None  # the account may no longer sign in: nothing to confirm
    code = secrets.mint_login_code(
        user=identity.user,
        outbox=row,
        ip=row.context.get("ip"),
        purpose=LoginCode.Purpose.REAUTHENTICATE,
    )
    lifetime = auth_settings.LOGIN_CODE_LIFETIME
    context = {"code": code, "expires_in": lifetime_phrase(lifetime)}
    return _render(
        _Email("reauthentication_code", row.recipient, context), identity.user
    )


@sensitive_variables()
def _password_reset(row: OutboxEmail) -> EmailMultiAlternatives | None:
    identity = recipients.password_reset_recipient(row)
    if identity is None:
        return None
    context = _with_link(row, identity.user, Purpose.PASSWORD_RESET)
    return _render(_Email("password_reset", row.recipient, context), identity.user)


@sensitive_variables()
def _email_change(row: OutboxEmail) -> EmailMultiAlternatives | None:
    found = recipients.email_change_recipient(row)
    if found is None:
        return None
    user, new_email = found
    context = _with_link(row, user, Purpose.EMAIL_CHANGE, email=new_email)
    context["new_email"] = new_email
    return _render(_Email("email_change", row.recipient, context), user)


@sensitive_variables()
def _new_sign_in(row: OutboxEmail) -> EmailMultiAlternatives | None:
    found = recipients.new_sign_in_recipient(row)
    if found is None:
        return None
    identity, session = found
    context = _with_link(row, identity.user, Purpose.SESSION_REVOKE, session=session)
    context.update(
        signed_in_at=session.created_at,
        device=session.device or _("an unknown device"),
        ip=session.first_ip or _("unknown"),
        method_label=_method_label(session.method),
    )
    return _render(_Email("new_sign_in", row.recipient, context), identity.user)


_FACTOR_LABELS = {
    "password": _lazy("password"),
    "code": _lazy("emailed code"),
    "totp": _lazy("authenticator app"),
    "recovery_code": _lazy("recovery code"),
    "passkey": _lazy("passkey"),
}


def _method_label(method: str) -> str:
    """How a session signed in, as a person reads it: "password + authenticator
    app". A factor of a later release, or a host's own, reads as its name."""
    return " + ".join(str(_FACTOR_LABELS.get(part, part)) for part in method.split("+"))


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
    Kind.SESSION_REUSED: _notice("session_reused"),
    Kind.NEW_SIGN_IN: _new_sign_in,
    Kind.MFA_CHANGED: _notice("mfa_changed"),
    Kind.REAUTHENTICATION_CODE: _reauthentication_code,
}
