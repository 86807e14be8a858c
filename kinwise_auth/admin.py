"""Read-only admin for identities, tokens, the outbox and the audit log.

Token hashes are never shown. An operator can re-queue outbox emails.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import outbox
from .models import AuthEvent, EmailIdentity, LinkToken, LoginCode, OutboxEmail
from .services.sign_in_failures import unlock


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(EmailIdentity)
class EmailIdentityAdmin(ReadOnlyAdmin):
    list_display = ["email", "user", "verified_at", "created_at", "failed_sign_ins"]
    list_filter = [("verified_at", admin.EmptyFieldListFilter)]
    search_fields = ["email_normalized"]
    list_select_related = ["user"]
    actions = ["unlock"]

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
