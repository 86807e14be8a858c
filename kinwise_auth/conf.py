"""The package's settings: ``settings.KINWISE_AUTH`` read over :data:`DEFAULTS`.

Read values at call time (``auth_settings.FRONTEND_URL``), never into a module
constant: the object reloads in place when a test overrides ``KINWISE_AUTH``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

__all__ = ["DEFAULTS", "IMPORT_STRINGS", "AuthSettings", "auth_settings"]

DEFAULTS: dict[str, Any] = {
    # Links in emails are FRONTEND_URL + the path; the host's Host header never is.
    "FRONTEND_URL": "",
    "VERIFY_EMAIL_PATH": "/verify-email?token={token}",
    "PASSWORD_RESET_PATH": "/reset-password?token={token}",
    "EMAIL_CHANGE_PATH": "/confirm-email-change?token={token}",
    "SESSION_REVOKE_PATH": "/revoke-session?token={token}",
    # None: the current Site's name (django.contrib.sites with SITE_ID), else
    # FRONTEND_URL's host.
    "SITE_NAME": None,
    "EMAIL_FROM": None,  # None: settings.DEFAULT_FROM_EMAIL
    "EMAIL_VERIFICATION_LIFETIME": timedelta(hours=24),
    "PASSWORD_RESET_LIFETIME": timedelta(hours=1),
    "EMAIL_CHANGE_LIFETIME": timedelta(hours=24),
    # How long the link in a "new sign-in" email can sign that session out.
    "SESSION_REVOKE_LIFETIME": timedelta(days=7),
    # Email the owner when a sign-in comes from a device label and network
    # (IPv4 /24, IPv6 /48) their account has not used within NEW_DEVICE_WINDOW.
    "NEW_SIGN_IN_EMAIL": True,
    "NEW_DEVICE_WINDOW": timedelta(days=90),
    # Two-step sign-in: how long the mfa_token of a sign-in waiting for its
    # second factor lives, and how many wrong codes kill it.
    "MFA_CHALLENGE_LIFETIME": timedelta(minutes=5),
    "MFA_MAX_ATTEMPTS": 5,
    # Passkeys (WebAuthn). None: the host of FRONTEND_URL, SITE_NAME, and the
    # origin of FRONTEND_URL. WEBAUTHN_ORIGINS lists every origin whose pages
    # call navigator.credentials (an SPA on another origin, an app's origin).
    "WEBAUTHN_RP_ID": None,
    "WEBAUTHN_RP_NAME": None,
    "WEBAUTHN_ORIGINS": None,
    # How long a passkey ceremony's challenge can be answered.
    "WEBAUTHN_CHALLENGE_LIFETIME": timedelta(minutes=5),
    # Revoke every other refresh token of a user who changes their password.
    "REVOKE_REFRESH_ON_PASSWORD_CHANGE": True,
    # account/delete/: "delete" the user, or "deactivate" it and scrub its fields.
    "ACCOUNT_DELETION": "delete",
    "LOGIN_CODE_LENGTH": 6,
    "LOGIN_CODE_LIFETIME": timedelta(minutes=10),
    "LOGIN_CODE_MAX_ATTEMPTS": 3,
    # Failed code checks one account may take in a day, across every code it was
    # sent: three per code would otherwise allow guessing without end.
    "LOGIN_CODE_DAILY_FAILURES": 20,
    # After this many failed code or password sign-ins in a day, the owner gets
    # one "someone is trying to sign in" email a day (None: never).
    "SECURITY_NOTICE_AFTER": 10,
    # A pending (never verified) account older than this is deleted by the
    # purge, freeing its address.
    "PENDING_ACCOUNT_LIFETIME": timedelta(days=7),
    "PREVENT_ENUMERATION": True,
    # scope -> {"ip": rate, "email": rate, "account": rate}; rates use
    # django-ratelimit's syntax. "email" keys the address given in the body (for
    # login/, failures only); "account" keys the signed-in user, the refresh
    # token's user, or the user an emailed link was minted for.
    "RATE_LIMITS": {
        # The plan's 3 an hour count registrations (well-formed requests); every
        # request, refused forms included, spends the looser register_request
        # budget, taken before the body is parsed.
        "register": {"ip": "3/h", "email": "3/h"},
        "register_request": {"ip": "20/h"},
        "verify_email": {"ip": "30/m", "account": "10/10m"},
        "resend_verification": {"ip": "3/10m", "email": "3/10m"},
        "otp_request": {"ip": "3/10m", "email": "3/10m"},
        "otp_verify": {"ip": "5/10m", "email": "5/10m"},
        "login": {"ip": "10/m", "email": "5/10m"},
        "token_refresh": {"ip": "30/m", "account": "10/10m"},
        "logout": {"ip": "30/m", "account": "10/10m"},
        "me": {"ip": "30/m", "account": "10/10m"},
        "password_reset": {"ip": "3/10m", "email": "3/10m"},
        "password_reset_confirm": {"ip": "30/m", "account": "10/10m"},
        "password_change": {"ip": "30/m", "account": "10/10m"},
        "email_change": {"ip": "30/m", "account": "10/10m", "email": "3/10m"},
        "email_change_confirm": {"ip": "30/m", "account": "10/10m"},
        "account_delete": {"ip": "30/m", "account": "10/10m"},
        "sessions": {"ip": "30/m", "account": "30/10m"},
        "reauthenticate": {"ip": "30/m", "account": "10/10m"},
        "session_revoke_confirm": {"ip": "30/m", "account": "10/10m"},
        "csrf": {"ip": "60/m"},
        "mfa": {"ip": "30/m", "account": "20/10m"},
        "mfa_authenticate": {"ip": "10/m", "account": "10/10m"},
        "reauthentication_code": {"ip": "5/10m", "account": "3/10m"},
        "passkeys": {"ip": "30/m", "account": "30/10m"},
        # Per IP only: the options name no account, and an answer names one by
        # a credential id, which is no secret: a budget keyed by it would let
        # a stranger lock the owner out, and its 429 tell which ids exist. A
        # signature cannot be guessed.
        "passkey_login_options": {"ip": "20/m"},
        "passkey_login": {"ip": "20/m"},
    },
    "RATE_LIMIT_FAIL_OPEN": True,
    # The browser transport's refresh cookie (always HttpOnly). "domain": None
    # scopes it to the API's host; "samesite": "None" (with "secure") is for an
    # SPA on another site, see docs/spa.md.
    "BROWSER_REFRESH_COOKIE": {
        "name": "kinwise_refresh",
        "secure": True,
        "samesite": "Lax",
        "domain": None,
    },
    # Client IP: REMOTE_ADDR unless the host sits behind this many trusted proxies.
    "TRUSTED_PROXY_COUNT": 0,
    # Or a dotted path to ``resolver(request) -> str``, which then decides alone.
    "CLIENT_IP_RESOLVER": None,
    # An IPv6 client is limited by its network of this many bits (one host
    # usually holds a whole /64); an IPv4 client by its address.
    "IPV6_PREFIX_LENGTH": 64,
    "MAX_BODY_SIZE": 64 * 1024,
    "PUBLISH_TIMEOUT": 1.0,
    "DELIVERY_MAX_RETRIES": 6,
    "DELIVERY_RETRY_BACKOFF": 10,
    "DELIVERY_RETRY_BACKOFF_MAX": 600,
    # None: what one send can take, from Django's EMAIL_TIMEOUT (claim_timeout()).
    "OUTBOX_CLAIM_TIMEOUT": None,
    "OUTBOX_REDRIVE_AFTER": timedelta(minutes=1),
    # A rotated-away refresh token presented this soon after its rotation is
    # refused without revoking its session (two tabs refreshing at once).
    "REFRESH_REUSE_GRACE": timedelta(seconds=10),
    # How long a reauthentication lets a session make sensitive changes.
    "REAUTHENTICATION_TIMEOUT": timedelta(minutes=5),
    "OUTBOX_REDRIVE_BATCH": 500,
    "OUTBOX_RETENTION": timedelta(days=7),
    "AUDIT_RETENTION": timedelta(days=365),
    "PURGE_BATCH": 1000,
    "AUDIT_CALLABLE": None,
    "USER_SERIALIZER": "kinwise_auth.serializers.UserPayloadSerializer",
    "TOKEN_ISSUER": "kinwise_auth.tokens.issue_token_pair",
}

# Keys holding dotted paths, imported on first use.
IMPORT_STRINGS = (
    "AUDIT_CALLABLE",
    "USER_SERIALIZER",
    "TOKEN_ISSUER",
    "CLIENT_IP_RESOLVER",
)

DURATION_KEYS = (
    "PENDING_ACCOUNT_LIFETIME",
    "EMAIL_VERIFICATION_LIFETIME",
    "PASSWORD_RESET_LIFETIME",
    "EMAIL_CHANGE_LIFETIME",
    "SESSION_REVOKE_LIFETIME",
    "NEW_DEVICE_WINDOW",
    "MFA_CHALLENGE_LIFETIME",
    "WEBAUTHN_CHALLENGE_LIFETIME",
    "LOGIN_CODE_LIFETIME",
    "OUTBOX_CLAIM_TIMEOUT",
    "OUTBOX_REDRIVE_AFTER",
    "REFRESH_REUSE_GRACE",
    "REAUTHENTICATION_TIMEOUT",
    "OUTBOX_RETENTION",
    "AUDIT_RETENTION",
)


class AuthSettings:
    """``KINWISE_AUTH`` as attributes, over the defaults, with hooks imported."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "KINWISE_AUTH", None) or {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid kinwise_auth setting: {name!r}")
        if name in self._cache:
            return self._cache[name]
        value = self.user_settings.get(name, DEFAULTS[name])
        if name == "RATE_LIMITS" and isinstance(value, dict):
            # A host overrides one scope without restating the others.
            merged = {scope: dict(rates) for scope, rates in DEFAULTS[name].items()}
            for scope, rates in value.items():
                merged.setdefault(scope, {}).update(rates or {})
            value = merged
        elif name == "BROWSER_REFRESH_COOKIE" and isinstance(value, dict):
            value = {**DEFAULTS[name], **value}
        elif name in DURATION_KEYS and isinstance(value, int | float):
            value = timedelta(seconds=value)
        elif name in IMPORT_STRINGS and isinstance(value, str):
            value = import_string(value)
        self._cache[name] = value
        return value

    def rate(self, scope: str, kind: str) -> str | None:
        """The rate of ``scope`` per ``kind`` ("ip", "email" or "account");
        None: no limit."""
        return self.RATE_LIMITS.get(scope, {}).get(kind)

    def claim_timeout(self) -> timedelta:
        """How long a worker holds a claimed email: ``OUTBOX_CLAIM_TIMEOUT``, or,
        unset, three times Django's ``EMAIL_TIMEOUT`` plus 15 s (connecting, the
        slowest command and the message, then the rest of the delivery); five
        minutes when ``EMAIL_TIMEOUT`` is unset too, for a send may then hang."""
        configured: timedelta | None = self.OUTBOX_CLAIM_TIMEOUT
        if configured is not None:
            return configured
        email_timeout = getattr(settings, "EMAIL_TIMEOUT", None)
        if not email_timeout:
            return timedelta(minutes=5)
        return timedelta(seconds=3 * float(email_timeout) + 15)

    def delivery_time_limit(self) -> int:
        """The delivery task's hard time limit, in seconds: a little under the
        claim, so a worker is stopped before another may take its email over."""
        claim = self.claim_timeout().total_seconds()
        return max(1, int(claim - min(5.0, claim / 4)))

    def reload(self) -> None:
        self._cache.clear()


auth_settings = AuthSettings()


@receiver(setting_changed)
def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "KINWISE_AUTH":
        auth_settings.reload()
