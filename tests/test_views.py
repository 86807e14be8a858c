"""What every endpoint shares: pinned DRF policies, non-atomic requests."""

from __future__ import annotations

import pytest
from django.urls import get_resolver, resolve

from kinwise_auth import urls
from kinwise_auth.views import AuthAPIView

PATHS = [f"/api/v1/auth/{pattern.pattern}" for pattern in urls.urlpatterns]


@pytest.mark.parametrize("path", PATHS)
def test_every_view_opts_out_of_atomic_requests(path: str) -> None:
    # The counters and audit rows a service commits must survive the error it
    # then raises, whatever the host's ATOMIC_REQUESTS.
    assert "default" in resolve(path).func._non_atomic_requests


# DRF reads its DEFAULT_* settings into APIView's class attributes at import time,
# so a host's choices reach any view that does not set its own: the base sets all.
POLICIES = [
    "authentication_classes",
    "permission_classes",
    "parser_classes",
    "renderer_classes",
    "throttle_classes",
    "content_negotiation_class",
    "metadata_class",
    "versioning_class",
]


@pytest.mark.parametrize("policy", POLICIES)
def test_the_base_view_pins_every_drf_policy(policy: str) -> None:
    assert policy in AuthAPIView.__dict__


@pytest.mark.parametrize("path", PATHS)
def test_every_view_derives_from_the_base(path: str) -> None:
    assert issubclass(resolve(path).func.cls, AuthAPIView)


def test_the_paths_are_all_mounted() -> None:
    assert len(PATHS) == len(get_resolver().url_patterns[1].url_patterns)
