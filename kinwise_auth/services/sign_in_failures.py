"""Failed sign-ins per account and day (security rule 12).

Per-code attempt limits and rate limits slow guessing; this makes it finite and
visible. An account's failed code checks are capped per day across every code it
was sent (``LOGIN_CODE_DAILY_FAILURES``), and after ``SECURITY_NOTICE_AFTER``
failed code or password sign-ins in a day the owner gets one "someone is trying
to sign in" email that day. The counters live on the identity row, which the
caller holds locked (:func:`lock_identity`), so they hold under concurrency.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .. import outbox, ratelimit
from ..conf import auth_settings
from ..models import EmailIdentity, OutboxEmail
from .identities import find_identity

__all__ = ["lock_identity", "codes_exhausted", "record_failure", "unlock"]

DAY = timedelta(days=1)


def lock_identity(email: str) -> EmailIdentity | None:
    """The identity of ``email``, its user row then its own row locked (in the
    one lock order), read after the locks; None for an unknown address."""
    found = find_identity(email, lock_user=True)
    if found is None:
        return None
    identity = EmailIdentity.objects.select_for_update().filter(pk=found.pk).first()
    if identity is not None:
        identity.user = found.user
    return identity


def _new_day(identity: EmailIdentity, now: datetime) -> bool:
    return identity.failures_since is None or identity.failures_since <= now - DAY


def codes_exhausted(identity: EmailIdentity, now: datetime) -> bool:
    """Whether the account spent the day's budget of failed code checks."""
    if _new_day(identity, now):
        return False
    return identity.failed_codes >= int(auth_settings.LOGIN_CODE_DAILY_FAILURES)


def record_failure(identity: EmailIdentity, *, method: str, now: datetime) -> None:
    """Count a failed sign-in (``method`` "code" or "password") of a signed-up,
    active account; queue the day's notice when the count reaches the threshold.
    """
    if _new_day(identity, now):
        identity.failures_since = now
        identity.failed_sign_ins = identity.failed_codes = 0
    identity.failed_sign_ins += 1
    if method == "code":
        identity.failed_codes += 1
    fields = ["failures_since", "failed_sign_ins", "failed_codes"]
    threshold = auth_settings.SECURITY_NOTICE_AFTER
    notice_due = identity.attempts_notice_at is None or (
        identity.attempts_notice_at <= now - DAY
    )
    if threshold and identity.failed_sign_ins >= int(threshold) and notice_due:
        identity.attempts_notice_at = now
        fields.append("attempts_notice_at")
        outbox.queue(
            OutboxEmail.Kind.SIGN_IN_ATTEMPTS,
            user=identity.user,
            recipient=identity.email,
            context={"failures": identity.failed_sign_ins},
        )
    identity.save(update_fields=fields)


def unlock(*, email: str | None = None, ip: str | None = None) -> int:
    """Give ``email`` (and its account) and ``ip`` fresh budgets now.

    For an operator whose user is locked out: clears their rate-limit counters in
    every scope and the account's day of failed sign-ins (the code-check cap).
    Returns how many rate-limit counters existed.
    """
    user_id = None
    if email:
        identity = find_identity(email)
        if identity is not None:
            user_id = identity.user_id
            EmailIdentity.objects.filter(pk=identity.pk).update(
                failures_since=None, failed_sign_ins=0, failed_codes=0
            )
    return ratelimit.clear(ip=ip, email=email, user_id=user_id)
