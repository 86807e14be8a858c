"""One row per email the dev mailbox received."""

from __future__ import annotations

from django.db import models


class SentEmail(models.Model):
    """An email as the worker sent it: headers, text part and HTML part."""

    subject = models.CharField(max_length=998)
    from_email = models.CharField(max_length=998)
    to = models.TextField(help_text="Recipients, one per line.")
    text = models.TextField(blank=True)
    html = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.subject} → {self.to}"

    @property
    def recipients(self) -> list[str]:
        return self.to.splitlines()
