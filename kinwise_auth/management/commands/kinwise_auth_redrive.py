from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from kinwise_auth import outbox


class Command(BaseCommand):
    help = "Re-publish outbox emails left pending or whose claim expired."

    def handle(self, *args: Any, **options: Any) -> None:
        published = outbox.requeue_unsent()
        self.stdout.write(f"Re-published {published} outbox email(s).")
