"""An email backend that keeps every message in the database, for the dev mailbox."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend


class MailboxBackend(BaseEmailBackend):
    """Stores each message as a :class:`demo.models.SentEmail`; sends nothing."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        from .models import SentEmail

        for message in email_messages:
            html = ""
            if isinstance(message, EmailMultiAlternatives):
                html = next(
                    (
                        str(content)
                        for content, mimetype in message.alternatives
                        if mimetype == "text/html"
                    ),
                    "",
                )
            SentEmail.objects.create(
                subject=message.subject,
                from_email=message.from_email,
                to="\n".join(message.to),
                text=message.body,
                html=html,
            )
        return len(email_messages)
