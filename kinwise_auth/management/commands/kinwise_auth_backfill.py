from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from kinwise_auth.models import EmailIdentity
from kinwise_auth.normalization import normalize_email


class Command(BaseCommand):
    help = (
        "Create the email identity of every user that lacks one. Active users are "
        "marked verified. Addresses whose normal forms collide are reported and "
        "left for you to resolve."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Report only; write nothing."
        )

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
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
        for user in missing.iterator():
            groups[normalize_email(getattr(user, email_field))].append(user)
        now = timezone.now()
        created = 0
        collisions = 0
        with transaction.atomic():
            for normalized, users in groups.items():
                if normalized in taken or len(users) > 1:
                    collisions += 1
                    ids = ", ".join(str(u.pk) for u in users)
                    self.stderr.write(
                        f"collision: {normalized!r} held by user(s) {ids}"
                        + (" and an existing identity" if normalized in taken else "")
                    )
                    continue
                (user,) = users
                if not dry_run:
                    EmailIdentity.objects.create(
                        user=user,
                        email=getattr(user, email_field),
                        email_normalized=normalized,
                        verified_at=now if user.is_active else None,
                    )
                created += 1
        verb = "would create" if dry_run else "created"
        self.stdout.write(f"{verb} {created} identities; {collisions} collision(s).")
