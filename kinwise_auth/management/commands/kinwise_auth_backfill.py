from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from kinwise_auth.models import EmailIdentity
from kinwise_auth.normalization import EmailRefused, normalize, plan_rekeying


class Command(BaseCommand):
    help = (
        "Create the email identity of every user that lacks one, and bring the keys "
        "of existing identities to the current normal form. Active users are marked "
        "verified, inactive ones deactivated (or pending, with --inactive-pending). "
        "Addresses that collide, that two identities would share, or that have no "
        "normal form are reported and left for you to resolve."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Report only; write nothing."
        )
        parser.add_argument(
            "--inactive-pending",
            action="store_true",
            help="Make inactive users pending (verified by an emailed link, and "
            "purged after PENDING_ACCOUNT_LIFETIME) instead of deactivated.",
        )

    def handle(
        self,
        *args: Any,
        dry_run: bool = False,
        inactive_pending: bool = False,
        **options: Any,
    ) -> None:
        with transaction.atomic():
            rekeyed = self._rekey(dry_run)
            created, collisions = self._create(dry_run, inactive_pending)
        verb = "would create" if dry_run else "created"
        again = "would re-key" if dry_run else "re-keyed"
        self.stdout.write(
            f"{verb} {created} identities; {collisions} collision(s); "
            f"{again} {rekeyed}."
        )

    def _rekey(self, dry_run: bool) -> int:
        rows = EmailIdentity.objects.values_list("pk", "email", "email_normalized")
        plan = plan_rekeying(rows.iterator())
        for pk, address, reason in plan.refused:
            self.stderr.write(f"refused: identity {pk} {address!r}: {reason}")
        for key, pks in plan.merges.items():
            ids = ", ".join(str(pk) for pk in pks)
            self.stderr.write(f"would merge: {key!r} held by identities {ids}")
        if not dry_run:
            for pk, key in plan.changes.items():
                EmailIdentity.objects.filter(pk=pk).update(email_normalized=key)
        return len(plan.changes)

    def _create(self, dry_run: bool, inactive_pending: bool) -> tuple[int, int]:
        user_model = get_user_model()
        email_field = user_model.get_email_field_name()
        taken = set(EmailIdentity.objects.values_list("email_normalized", flat=True))
        missing = (
            user_model._default_manager.filter(kinwise_identity__isnull=True)
            .exclude(**{email_field: ""})
            .exclude(**{f"{email_field}__isnull": True})
            .order_by("pk")
        )
        groups: dict[str, list[Any]] = defaultdict(list)
        collisions = 0
        for user in missing.iterator():
            address = getattr(user, email_field)
            try:
                groups[normalize(address).key].append(user)
            except EmailRefused as exc:
                collisions += 1
                self.stderr.write(f"refused: user {user.pk} {address!r}: {exc.message}")
        now = timezone.now()
        created = 0
        for key, users in groups.items():
            if key in taken or len(users) > 1:
                collisions += 1
                ids = ", ".join(str(u.pk) for u in users)
                self.stderr.write(
                    f"collision: {key!r} held by user(s) {ids}"
                    + (" and an existing identity" if key in taken else "")
                )
                continue
            (user,) = users
            verified = user.is_active or not inactive_pending
            if not dry_run:
                EmailIdentity.objects.create(
                    user=user,
                    email=getattr(user, email_field),
                    email_normalized=key,
                    verified_at=now if verified else None,
                )
            created += 1
        return created, collisions
