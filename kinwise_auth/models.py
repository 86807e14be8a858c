"""Email identities, one-time secrets, sign-in sessions, the email outbox and the
audit log."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

__all__ = [
    "EmailIdentity",
    "OneTimeSecret",
    "LinkToken",
    "LoginCode",
    "Session",
    "Authenticator",
    "RecoveryCode",
    "MfaChallenge",
    "Passkey",
    "PasskeyChallenge",
    "OutboxEmail",
    "AuthEvent",
]


class EmailIdentity(models.Model):
    """One row per user: the address as given and its unique normal form.

    The user model's ``email`` may not be unique (Django's ``auth.User``); this
    table is what makes ``A@x.com`` and ``a@X.COM`` one account.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kinwise_identity",
    )
    email = models.CharField(_("email"), max_length=254)
    email_normalized = models.CharField(_("normalised email"), max_length=254)
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    # For a pending account, when its latest registration was made: the purge
    # deletes pending accounts by it (PENDING_ACCOUNT_LIFETIME).
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    # How many registrations this pending account has had: past one, every
    # verification email says the link sets the newest one's password.
    registrations = models.PositiveIntegerField(
        _("registrations"), default=1, db_default=1
    )
    # Failed sign-ins of the day that began at ``failures_since`` (security rule
    # 12): all of them, and those by emailed code, which are capped.
    failures_since = models.DateTimeField(
        _("failures counted since"), null=True, blank=True
    )
    failed_sign_ins = models.PositiveIntegerField(
        _("failed sign-ins"), default=0, db_default=0
    )
    failed_codes = models.PositiveIntegerField(
        _("failed code checks"), default=0, db_default=0
    )
    attempts_notice_at = models.DateTimeField(
        _("sign-in attempts notice sent at"), null=True, blank=True
    )

    class Meta:
        verbose_name = _("email identity")
        verbose_name_plural = _("email identities")
        constraints = [
            models.UniqueConstraint(
                fields=["email_normalized"], name="kinwise_identity_unique_email"
            )
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None

    @property
    def can_sign_in(self) -> bool:
        """Verified and active: the account gets codes and tokens."""
        return self.verified_at is not None and self.user.is_active

    @property
    def is_deactivated(self) -> bool:
        """Verified, then made inactive by an admin: no flow re-activates it."""
        return self.verified_at is not None and not self.user.is_active

    @property
    def is_pending(self) -> bool:
        """Registered, never verified, inactive: an account that belongs to
        nobody yet (a verified, inactive one was deactivated by an admin)."""
        return self.verified_at is None and not self.user.is_active


class SecretQuerySet(models.QuerySet[Any]):
    """Queries shared by every kind of one-time secret."""

    def live(self) -> SecretQuerySet:
        """Neither used nor superseded (it may still have expired)."""
        return self.filter(used_at=None, superseded_at=None)

    def supersede(self) -> int:
        """Retire every live secret in this queryset; the next one minted wins."""
        return self.live().update(superseded_at=timezone.now())


class OneTimeSecret(models.Model):
    """What every emailed secret shares: link tokens, login codes, later kinds.

    A one-time secret is stored only as a keyed hash (the plaintext exists only in
    the email), is good for a single use (``used_at``), is superseded by the next
    one minted in its place (``superseded_at``) and expires (``expires_at``). A
    subclass adds its hash, its user and outbox foreign keys (each with its own
    ``related_name``), its ``Meta`` with named indexes, and ``__str__``.
    """

    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    superseded_at = models.DateTimeField(_("superseded at"), null=True, blank=True)

    objects = SecretQuerySet.as_manager()

    class Meta:
        abstract = True


class LinkToken(OneTimeSecret):
    """A single-use emailed link token, stored only as a keyed hash.

    ``purpose`` scopes a token to one flow: a verification token never resets a
    password. ``outbox`` is the email that carried it, so a re-run of that email
    supersedes the token it minted before. ``email`` is the address an email-change
    link proves (empty for the other purposes).
    """

    class Purpose(models.TextChoices):
        VERIFY_EMAIL = "verify_email", _("email verification")
        PASSWORD_RESET = "password_reset", _("password reset")
        EMAIL_CHANGE = "email_change", _("email change")
        SESSION_REVOKE = "session_revoke", _("sign-out from a new sign-in notice")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kinwise_link_tokens",
    )
    purpose = models.CharField(_("purpose"), max_length=32, choices=Purpose.choices)
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True)
    email = models.CharField(_("email"), max_length=254, blank=True)
    outbox = models.ForeignKey(
        "OutboxEmail",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="link_tokens",
    )
    # The public id of the session a "new sign-in" link signs out (that purpose
    # only). Not a foreign key: deleting a user's sessions costs no cascade.
    session_id = models.UUIDField(_("session"), null=True, blank=True)

    class Meta:
        verbose_name = _("link token")
        verbose_name_plural = _("link tokens")
        indexes = [
            models.Index(fields=["user", "purpose"], name="kinwise_token_user_purpose"),
            models.Index(fields=["expires_at"], name="kinwise_token_expires"),
        ]

    def __str__(self) -> str:
        # Never the hash: admin lists and logs show which token, not what it is.
        return f"{self.get_purpose_display()} #{self.pk}"


class LoginCode(OneTimeSecret):
    """A one-time emailed code, stored only as a keyed hash bound to its user
    and purpose: a sign-in code never reauthenticates, nor the reverse.

    Single use; dies after ``LOGIN_CODE_MAX_ATTEMPTS`` wrong guesses; superseded by
    the next code of the same purpose minted for the same user.
    """

    class Purpose(models.TextChoices):
        SIGN_IN = "sign_in", _("sign-in")
        REAUTHENTICATE = "reauthenticate", _("reauthentication")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kinwise_login_codes",
    )
    code_hash = models.CharField(_("code hash"), max_length=64)
    purpose = models.CharField(
        _("purpose"),
        max_length=16,
        choices=Purpose.choices,
        default=Purpose.SIGN_IN,
        db_default=Purpose.SIGN_IN,
    )
    outbox = models.ForeignKey(
        "OutboxEmail",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="login_codes",
    )
    ip = models.GenericIPAddressField(_("requested from"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("wrong attempts"), default=0)

    class Meta:
        verbose_name = _("login code")
        verbose_name_plural = _("login codes")
        indexes = [
            models.Index(fields=["user", "-created_at"], name="kinwise_code_user"),
            models.Index(fields=["expires_at"], name="kinwise_code_expires"),
        ]

    def __str__(self) -> str:
        return f"login code #{self.pk}"


class Session(models.Model):
    """One sign-in: its refresh tokens form a family, its access tokens carry its id.

    ``public_id`` is the ``sid`` claim of both tokens and the id the API shows.
    ``network`` is the first IP's /24 (IPv4) or /48 (IPv6): with ``device`` it is
    what makes a sign-in "new" (``new_device``, decided by the INSERT).
    ``refresh_jti`` is the family's one live refresh token: rotation moves it, and
    a rotated-away token presented again (past ``REFRESH_REUSE_GRACE``) revokes
    the session. Revoked sessions refuse their access tokens too.
    """

    class Method(models.TextChoices):
        PASSWORD = "password", _("password")
        CODE = "code", _("emailed code")

    public_id = models.UUIDField(
        _("public id"), default=uuid.uuid4, unique=True, editable=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kinwise_sessions",
    )
    method = models.CharField(_("signed in with"), max_length=32)
    device = models.CharField(_("device"), max_length=200, blank=True)
    first_ip = models.GenericIPAddressField(_("first IP"), null=True, blank=True)
    last_ip = models.GenericIPAddressField(_("last IP"), null=True, blank=True)
    network = models.CharField(_("network"), max_length=64, blank=True)
    new_device = models.BooleanField(
        _("new device or network"), default=False, db_default=False
    )
    refresh_jti = models.CharField(_("live refresh token id"), max_length=255)
    previous_jti = models.CharField(
        _("refresh token id before the last rotation"), max_length=255, blank=True
    )
    rotated_at = models.DateTimeField(_("rotated at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), default=timezone.now)
    reauthenticated_at = models.DateTimeField(
        _("reauthenticated at"), null=True, blank=True
    )
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_reason = models.CharField(_("revoked because"), max_length=32, blank=True)

    class Meta:
        verbose_name = _("sign-in session")
        verbose_name_plural = _("sign-in sessions")
        indexes = [
            models.Index(fields=["user", "revoked_at"], name="kinwise_session_user"),
        ]

    def __str__(self) -> str:
        return f"{self.device or self.method} #{self.pk}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Authenticator(models.Model):
    """A second factor of a user's: for now a TOTP app.

    ``secret`` is the TOTP seed sealed (AES-GCM, :func:`kinwise_auth.crypto.seal`)
    and bound to the user; ``pending_secret`` is the one a setup offers until it
    is confirmed with a code (``pending_until``). ``last_step`` is the newest
    time step accepted: a code of that step or an older one is refused (replay).
    ``confirmed_at`` is None while the factor is only being set up.
    """

    class Kind(models.TextChoices):
        TOTP = "totp", _("authenticator app (TOTP)")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kinwise_authenticators",
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    secret = models.TextField(_("sealed secret"), blank=True)
    pending_secret = models.TextField(_("sealed secret being set up"), blank=True)
    pending_until = models.DateTimeField(_("set-up open until"), null=True, blank=True)
    last_step = models.BigIntegerField(_("last time step used"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("enabled at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("authenticator")
        verbose_name_plural = _("authenticators")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind"], name="kinwise_authenticator_one_per_kind"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_enabled(self) -> bool:
        return self.confirmed_at is not None and bool(self.secret)


class RecoveryCode(models.Model):
    """One of a user's single-use recovery codes, stored only as a keyed hash
    bound to its user. A new set retires the old one (``superseded_at``)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kinwise_recovery_codes",
    )
    code_hash = models.CharField(_("code hash"), max_length=64)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    superseded_at = models.DateTimeField(_("superseded at"), null=True, blank=True)

    class Meta:
        verbose_name = _("recovery code")
        verbose_name_plural = _("recovery codes")
        indexes = [
            models.Index(fields=["user", "code_hash"], name="kinwise_recovery_user"),
        ]

    def __str__(self) -> str:
        return f"recovery code #{self.pk}"


class MfaChallenge(OneTimeSecret):
    """A sign-in waiting for its second factor: the first factor was right.

    Its token (``mfa_token``) is stored only as a keyed hash; it works once,
    for ``MFA_CHALLENGE_LIFETIME``, and dies after ``MFA_MAX_ATTEMPTS`` wrong
    codes. A newer challenge of the same user supersedes it. ``method`` is the
    first factor ("password" or "code").
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kinwise_mfa_challenges",
    )
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True)
    method = models.CharField(_("first factor"), max_length=16)
    attempts = models.PositiveIntegerField(_("wrong codes"), default=0)

    class Meta:
        verbose_name = _("two-step sign-in challenge")
        verbose_name_plural = _("two-step sign-in challenges")
        indexes = [
            models.Index(fields=["user", "-created_at"], name="kinwise_mfa_user"),
            models.Index(fields=["expires_at"], name="kinwise_mfa_expires"),
        ]

    def __str__(self) -> str:
        return f"two-step sign-in #{self.pk}"


class Passkey(models.Model):
    """A user's WebAuthn credential: a discoverable key pair on their device.

    Only the public key is here; ``sign_count`` is the authenticator's counter
    as last seen (0 for a synced passkey, which keeps none); ``user_handle`` the
    opaque id the credential carries for its user.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="kinwise_passkeys",
    )
    credential_id = models.BinaryField(_("credential id"), max_length=1023)
    public_key = models.BinaryField(_("public key (COSE)"))
    sign_count = models.BigIntegerField(_("sign count"), default=0)
    user_handle = models.BinaryField(_("user handle"), max_length=64)
    transports = models.JSONField(_("transports"), default=list, blank=True)
    aaguid = models.CharField(_("authenticator model (AAGUID)"), max_length=36)
    backed_up = models.BooleanField(_("synced"), default=False)
    name = models.CharField(_("name"), max_length=64)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)

    class Meta:
        verbose_name = _("passkey")
        verbose_name_plural = _("passkeys")
        constraints = [
            models.UniqueConstraint(
                fields=["credential_id"], name="kinwise_passkey_credential"
            )
        ]
        indexes = [models.Index(fields=["user"], name="kinwise_passkey_user")]

    def __str__(self) -> str:
        return f"passkey {self.name!r} #{self.pk}"


class PasskeyChallenge(OneTimeSecret):
    """The challenge of one passkey ceremony, stored only as a keyed hash bound
    to its purpose and, but for a sign-in, its user (:mod:`crypto`).

    ``public_id`` is the ``challenge_id`` a passwordless sign-in names;
    ``mfa_challenge`` the sign-in a second-factor ceremony finishes.
    """

    class Purpose(models.TextChoices):
        REGISTER = "register", _("add a passkey")
        SIGN_IN = "sign_in", _("sign in")
        SECOND_FACTOR = "second_factor", _("second factor")
        REAUTHENTICATE = "reauthenticate", _("reauthentication")

    public_id = models.UUIDField(_("public id"), default=uuid.uuid4, unique=True)
    purpose = models.CharField(_("purpose"), max_length=16, choices=Purpose.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="kinwise_passkey_challenges",
    )
    mfa_challenge = models.ForeignKey(
        MfaChallenge,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    challenge_hash = models.CharField(_("challenge hash"), max_length=64, unique=True)

    class Meta:
        verbose_name = _("passkey challenge")
        verbose_name_plural = _("passkey challenges")
        indexes = [
            models.Index(fields=["expires_at"], name="kinwise_passkey_chal_expires"),
        ]

    def __str__(self) -> str:
        return f"passkey {self.purpose} challenge #{self.pk}"


class OutboxEmail(models.Model):
    """The intent to send one email, written in the request's transaction.

    It holds no secret: the task mints codes and tokens when it delivers.
    """

    class Kind(models.TextChoices):
        VERIFY_EMAIL = "verify_email", _("verification link")
        WELCOME = "welcome", _("welcome")
        ACCOUNT_EXISTS = "account_exists", _("account already exists")
        LOGIN_CODE = "login_code", _("login code")
        PASSWORD_RESET = "password_reset", _("password reset link")
        PASSWORD_CHANGED = "password_changed", _("password changed notice")
        EMAIL_CHANGE = "email_change", _("email change link")
        EMAIL_CHANGED = "email_changed", _("email changed notice")
        GOODBYE = "goodbye", _("goodbye")
        SIGN_IN_ATTEMPTS = "sign_in_attempts", _("sign-in attempts notice")
        SESSION_REUSED = "session_reused", _("reused sign-in token notice")
        NEW_SIGN_IN = "new_sign_in", _("new sign-in notice")
        MFA_CHANGED = "mfa_changed", _("two-step sign-in changed notice")
        REAUTHENTICATION_CODE = "reauthentication_code", _("reauthentication code")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        SKIPPED = "skipped", _("skipped")
        FAILED = "failed", _("failed")

    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    recipient = models.CharField(_("recipient"), max_length=254)
    context = models.JSONField(_("context"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    available_at = models.DateTimeField(_("available at"), default=timezone.now)
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("outbox email")
        verbose_name_plural = _("outbox emails")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "available_at"], name="kinwise_outbox_due"),
            models.Index(fields=["created_at"], name="kinwise_outbox_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"


class AuthEvent(models.Model):
    """One audited auth event. ``extra`` is small and never holds a secret."""

    event_type = models.CharField(_("event type"), max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=512, blank=True)
    extra = models.JSONField(_("extra"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("auth event")
        verbose_name_plural = _("auth events")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="kinwise_event_user"),
            models.Index(fields=["created_at"], name="kinwise_event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} at {self.created_at:%Y-%m-%d %H:%M:%S}"
