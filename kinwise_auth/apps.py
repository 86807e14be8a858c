from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KinwiseAuthConfig(AppConfig):
    name = "kinwise_auth"
    label = "kinwise_auth"
    verbose_name = _("Kinwise auth")
    # Pinned so migrations are the same whatever the host's DEFAULT_AUTO_FIELD.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Checks and setting receivers register on import; so does the delivery
        # task, which the outbox publishes by name.
        from . import checks, conf, receivers, tasks  # noqa: F401

        try:
            import drf_spectacular  # noqa: F401
        except ImportError:
            return
        from . import openapi  # noqa: F401  (registers the schema extensions)
