"""Read-only admin for identities, tokens, sessions, the outbox and the audit log.

Token hashes and refresh token ids are never shown. An operator can clear an
account's rate limits, revoke sessions and re-queue outbox emails.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import outbox, ratelimit
from .models import (
    Authenticator,
    AuthEvent,
    EmailIdentity,
    LinkToken,
    LoginCode,
    OutboxEmail,
    Passkey,
    Session,
)
from .services.meta import RequestMeta
from .services.mfa_enrolment import reset_factors
from .services.sessions import revoke_sessions
from .services.sign_in_failures import unlock


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EmailIdentity)
class EmailIdentityAdmin(ReadOnlyAdmin):
    list_display = [
        "email",
        "user",
        "verified_at",
        "created_at",
        "failed_sign_ins",
        "sessions",
    ]
    list_filter = [("verified_at", admin.EmptyFieldListFilter)]
    search_fields = ["email_normalized"]
    list_select_related = ["user"]
    readonly_fields = ["sessions"]
    actions = ["unlock", "reset_two_step"]

    def has_reset_two_step_permission(self, request: HttpRequest) -> bool:
        # The admin is read-only, so view permission alone must not reset.
        return bool(request.user.has_perm("kinwise_auth.delete_authenticator"))

    @admin.action(
        description=_("Reset the two-step sign-in of the selected accounts"),
        permissions=["reset_two_step"],
    )
    def reset_two_step(
        self, request: HttpRequest, queryset: QuerySet[EmailIdentity]
    ) -> None:
        """Remove the accounts' authenticator apps, passkeys and recovery codes
        (a lost phone); each owner is emailed and the reset audited."""
        meta = RequestMeta(ip=ratelimit.valid_ip(ratelimit.client_ip(request)))
        count = sum(
            reset_factors(identity.user, meta=meta)
            for identity in queryset.select_related("user")
        )
        self.message_user(
            request,
            ngettext(
                "Two-step sign-in reset for %(count)d account.",
                "Two-step sign-in reset for %(count)d accounts.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmailIdentity]:
        # Counted in the list's one query: no query per row.
        return (
            super()
            .get_queryset(request)
            .annotate(
                live_sessions=Count(
                    "user__kinwise_sessions",
                    filter=Q(user__kinwise_sessions__revoked_at=None),
                )
            )
        )

    @admin.display(description=_("live sessions"), ordering="live_sessions")
    def sessions(self, obj: EmailIdentity) -> str:
        """The user's live sessions, linked to all their sessions."""
        # The parameter the admin's own user filter would use.
        target = Session._meta.get_field("user").target_field.name
        url = reverse("admin:kinwise_auth_session_changelist")
        return format_html(
            '<a href="{}?user__{}__exact={}">{}</a>',
            url,
            target,
            obj.user_id,
            obj.live_sessions,  # type: ignore[attr-defined]
        )

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        # The admin is read-only, so view permission alone must not unlock.
        return bool(request.user.has_perm("kinwise_auth.change_emailidentity"))

    @admin.action(
        description=_("Clear the rate limits of the selected accounts"),
        permissions=["unlock"],
    )
    def unlock(self, request: HttpRequest, queryset: QuerySet[EmailIdentity]) -> None:
        """Fresh budgets for a locked-out user: their address's and account's
        rate-limit counters, and the day's failed sign-ins (kinwise_auth_unlock)."""
        for email in queryset.values_list("email", flat=True):
            unlock(email=email)
        count = queryset.count()
        self.message_user(
            request,
            ngettext(
                "Rate limits cleared for %(count)d account.",
                "Rate limits cleared for %(count)d accounts.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )


@admin.register(LinkToken)
class LinkTokenAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "user", "purpose", "created_at", "expires_at", "used_at"]
    list_filter = ["purpose"]
    exclude = ["token_hash"]
    list_select_related = ["user"]


@admin.register(LoginCode)
class LoginCodeAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "user",
        "ip",
        "created_at",
        "expires_at",
        "attempts",
        "used_at",
    ]
    exclude = ["code_hash"]
    list_select_related = ["user"]


@admin.register(Session)
class SessionAdmin(ReadOnlyAdmin):
    list_display = [
        "user",
        "device",
        "method",
        "first_ip",
        "last_ip",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_reason",
    ]
    list_filter = [
        "method",
        ("revoked_at", admin.EmptyFieldListFilter),
        "revoked_reason",
    ]
    search_fields = ["user__kinwise_identity__email_normalized", "=public_id"]
    list_select_related = ["user"]
    # Refresh token ids, like the secrets' hashes elsewhere: never shown.
    exclude = ["refresh_jti", "previous_jti"]
    readonly_fields = ["public_id"]
    actions = ["revoke"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        # The admin is read-only, so view permission alone must not revoke.
        return bool(request.user.has_perm("kinwise_auth.change_session"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Revoke, never delete: a deleted row loses the record of the sign-in,
        # and its access tokens would pass until the cache's "live" answer ends.
        return False

    @admin.action(description=_("Revoke the selected sessions"), permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        """End the selected live sessions: their refresh tokens are refused now,
        their access tokens from the next request. Revoked ones are skipped."""
        count = revoke_sessions(queryset, reason="admin")
        self.message_user(
            request,
            ngettext("%(count)d session revoked.", "%(count)d sessions revoked.", count)
            % {"count": count},
            messages.SUCCESS,
        )


@admin.register(OutboxEmail)
class OutboxEmailAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "recipient",
        "status",
        "attempts",
        "created_at",
        "sent_at",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["recipient"]
    actions = ["requeue"]

    @admin.action(description=_("Re-queue the selected emails"))
    def requeue(self, request: HttpRequest, queryset: QuerySet[OutboxEmail]) -> None:
        # Not rows being sent right now: that could send one email twice.
        resendable = [OutboxEmail.Status.FAILED, OutboxEmail.Status.PENDING]
        ids = list(queryset.filter(status__in=resendable).values_list("pk", flat=True))
        published = outbox.requeue(ids)
        self.message_user(
            request,
            ngettext(
                "%(count)d email re-queued.", "%(count)d emails re-queued.", published
            )
            % {"count": published},
            messages.SUCCESS if published == len(ids) else messages.WARNING,
        )


@admin.register(AuthEvent)
class AuthEventAdmin(ReadOnlyAdmin):
    list_display = ["event_type", "user", "ip", "created_at"]
    list_filter = ["event_type"]
    search_fields = ["event_type", "ip"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]


@admin.register(Authenticator)
class AuthenticatorAdmin(ReadOnlyAdmin):
    """Which accounts have which second factor: never the secret."""

    list_display = ["user", "kind", "confirmed_at", "last_used_at", "created_at"]
    list_filter = ["kind", ("confirmed_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__kinwise_identity__email_normalized"]
    list_select_related = ["user"]
    exclude = ["secret", "pending_secret", "last_step"]


@admin.register(Passkey)
class PasskeyAdmin(ReadOnlyAdmin):
    """Which accounts have which passkeys: names and use, never key material.
    Removing one is the owner's (``DELETE passkeys/<id>/``) or the reset's."""

    list_display = ["name", "user", "backed_up", "created_at", "last_used_at"]
    list_filter = ["backed_up"]
    search_fields = ["user__kinwise_identity__email_normalized", "name"]
    list_select_related = ["user"]
    fields = [
        "user",
        "name",
        "aaguid",
        "backed_up",
        "sign_count",
        "created_at",
        "last_used_at",
    ]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
