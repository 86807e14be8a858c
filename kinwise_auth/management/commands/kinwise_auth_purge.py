from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from kinwise_auth import maintenance


class Command(BaseCommand):
    help = "Delete expired link tokens, old outbox rows and audit rows past retention."

    def handle(self, *args: Any, **options: Any) -> None:
        for table, count in maintenance.purge_expired().items():
            self.stdout.write(f"{table}: {count} deleted")
