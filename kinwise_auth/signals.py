"""One signal per auth event. Each is sent by :func:`kinwise_auth.audit.record`.

Every signal is sent with ``sender`` = the user model class and the keyword
arguments ``user`` (``None`` when the event has no user), ``ip``, ``user_agent``
and ``extra`` (a small dict, never holding a secret).
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "user_registered",
    "registration_for_existing_email",
    "pending_registration_replaced",
    "verification_requested",
    "email_verified",
    "email_delivery_failed",
    "login_code_requested",
    "login_succeeded",
    "login_failed",
    "logged_out",
    "password_reset_requested",
    "password_reset",
    "password_changed",
    "email_change_requested",
    "email_changed",
    "account_deleted",
    "session_opened",
    "session_rotated",
    "session_reused",
    "session_revoked",
    "mfa_changed",
    "passkey_sign_count_regressed",
    "EVENT_SIGNALS",
]

# A new pending account was created. Arguments: user, ip, user_agent, extra.
user_registered = Signal()

# Someone registered an address a verified account already holds; that account
# was emailed an "account exists" notice. Arguments: user, ip, user_agent, extra.
registration_for_existing_email = Signal()

# Someone registered an address a pending account holds: the newest password,
# names and spelling replaced the pending ones, the links mailed before died and
# a fresh link went out. Arguments: user, ip, user_agent, extra.
pending_registration_replaced = Signal()

# A verification email was asked for again (resend-verification/).
# Arguments: user (None when no account holds the address), ip, user_agent, extra.
verification_requested = Signal()

# A pending account proved its address and became active.
# Arguments: user, ip, user_agent, extra.
email_verified = Signal()

# An email could not be delivered once its retries ran out.
# Arguments: user (may be None), ip (None), user_agent (""), extra: {"outbox_id",
# "kind", "error"}.
email_delivery_failed = Signal()

# Someone asked for a login code (otp/request/). The delivery task sends one only
# to an active, verified account. Arguments: user (None for an unknown address),
# ip, user_agent, extra.
login_code_requested = Signal()

# A user signed in and was issued tokens. Django's own ``user_logged_in`` is sent
# too. Arguments: user, ip, user_agent, extra: {"method", "session"}: the method
# is "code", "password" or "passkey", with its second factor after a "+"
# ("password+totp", "code+recovery_code", "password+passkey").
login_succeeded = Signal()

# A sign-in failed. Arguments: user (None for an unknown address), ip, user_agent,
# extra: {"method": "code" | "password" | "passkey" | "password+mfa" |
# "code+mfa", "reason": the error code (for "passkey", why it was refused)}.
login_failed = Signal()

# A refresh token was revoked by logout/. Arguments: user (None if deleted), ip,
# user_agent, extra.
logged_out = Signal()

# A reset link was asked for (password/reset/). The delivery task sends one only
# to an active or pending account. Arguments: user (None for an unknown address),
# ip, user_agent, extra.
password_reset_requested = Signal()

# A password was set from a reset link; every refresh token was revoked.
# Arguments: user, ip, user_agent, extra.
password_reset = Signal()

# A signed-in user changed their password. Arguments: user, ip, user_agent, extra.
password_changed = Signal()

# A signed-in user asked to move to a new address (the link goes there, or the
# address's holder is told). Arguments: user, ip, user_agent, extra.
email_change_requested = Signal()

# The new address was confirmed and is now the account's. Arguments: user, ip,
# user_agent, extra: {"old_email", "new_email"}.
email_changed = Signal()

# An account was deleted (or deactivated and scrubbed). Sent before the user row
# goes. Arguments: user, ip, user_agent, extra: {"mode": "delete" | "deactivate"}.
account_deleted = Signal()

# A sign-in opened a session (its ``AuthEvent`` is the ``login_succeeded`` row,
# whose extra names the session too). Arguments: user, ip, user_agent, extra:
# {"session": its public id, "method", "device"}.
session_opened = Signal()

# A refresh rotated a session's refresh token. Sent with no ``AuthEvent`` row:
# every client refreshes every few minutes, and the session row keeps
# ``rotated_at`` and ``last_used_at``. Arguments: user, ip, user_agent, extra:
# {"session"}.
session_rotated = Signal()

# A refresh token rotated away was presented again after REFRESH_REUSE_GRACE: the
# session was revoked (``session_revoked`` follows) and its owner emailed.
# Arguments: user, ip, user_agent, extra: {"session", "device"}.
session_reused = Signal()

# Sessions were revoked, by one action. Arguments: user, ip, user_agent, extra:
# {"sessions": [public ids], "reason": "logout" | "user" | "reuse" |
# "password_changed" | "password_reset" | "account_deleted" | "deactivated" |
# "admin" | "notice_link" | "factors_reset" | "passkey_removed"}.
session_revoked = Signal()

# A second factor was enabled, removed or renewed, or an operator reset them.
# Arguments: user, ip, user_agent, extra: {"change": "totp_enabled" |
# "totp_disabled" | "recovery_codes_renewed" | "passkey_added" |
# "passkey_removed" | "factors_reset"}.
mfa_changed = Signal()

# A passkey answered with a genuine signature but a sign count not above the one
# last seen: perhaps a cloned authenticator. The sign-in was refused. Arguments:
# user, ip, user_agent, extra: {"passkey": its id, "stored": the count kept}.
passkey_sign_count_regressed = Signal()

EVENT_SIGNALS: dict[str, Signal] = {
    "user_registered": user_registered,
    "registration_for_existing_email": registration_for_existing_email,
    "pending_registration_replaced": pending_registration_replaced,
    "verification_requested": verification_requested,
    "email_verified": email_verified,
    "email_delivery_failed": email_delivery_failed,
    "login_code_requested": login_code_requested,
    "login_succeeded": login_succeeded,
    "login_failed": login_failed,
    "logged_out": logged_out,
    "password_reset_requested": password_reset_requested,
    "password_reset": password_reset,
    "password_changed": password_changed,
    "email_change_requested": email_change_requested,
    "email_changed": email_changed,
    "account_deleted": account_deleted,
    "session_opened": session_opened,
    "session_rotated": session_rotated,
    "session_reused": session_reused,
    "session_revoked": session_revoked,
    "mfa_changed": mfa_changed,
    "passkey_sign_count_regressed": passkey_sign_count_regressed,
}
