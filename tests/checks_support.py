"""A host's own subclass of the package's backend (system check E011 accepts it)."""

from __future__ import annotations

from kinwise_auth.backends import EmailBackend


class EmailBackendOfTheHost(EmailBackend):
    pass
