"""Reactions to changes made outside the package's flows."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from .services.sessions import revoke_refresh_tokens

__all__ = ["revoke_sessions_of_deactivated_users"]


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="kinwise_auth")
def revoke_sessions_of_deactivated_users(
    sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any
) -> None:
    """An admin unticking ``is_active`` (or any save of an inactive user that
    may have changed it) signs the user out everywhere, access tokens included."""
    if created or instance.is_active:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return  # a pending account saved by registration: nothing to revoke
    revoke_refresh_tokens(instance, reason="deactivated")
