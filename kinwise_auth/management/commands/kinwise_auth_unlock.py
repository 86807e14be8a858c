from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from kinwise_auth.services.sign_in_failures import unlock


class Command(BaseCommand):
    help = (
        "Give an address (and its account) or a client IP fresh rate-limit budgets "
        "now, and clear the account's day of failed sign-ins: for a user locked "
        "out with 429 until a window ends."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--email", help="The address, in any spelling.")
        parser.add_argument(
            "--ip", help="The client IP (an IPv6 address clears its whole network)."
        )

    def handle(
        self, *args: Any, email: str | None = None, ip: str | None = None, **kw: Any
    ) -> None:
        if not email and not ip:
            raise CommandError("Give --email, --ip or both.")
        cleared = unlock(email=email, ip=ip)
        self.stdout.write(f"cleared {cleared} rate-limit counter(s).")
