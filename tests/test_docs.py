"""The reference docs name every public setting, error code, path, signal and check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import URLPattern

from kinwise_auth import errors, signals, urls
from kinwise_auth.conf import DEFAULTS

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = REPO_ROOT / "docs"
CHECKS_SOURCE = REPO_ROOT / "kinwise_auth" / "checks.py"


def read_doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def auth_error_classes() -> list[type[errors.AuthError]]:
    """``AuthError`` and every subclass, however deep."""
    found: list[type[errors.AuthError]] = []
    pending: list[type[errors.AuthError]] = [errors.AuthError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_setting_is_documented(key: str) -> None:
    assert f"`{key}`" in read_doc("settings.md")


@pytest.mark.parametrize(
    "code", sorted({cls.code for cls in auth_error_classes()}), ids=str
)
def test_every_error_code_is_documented(code: str) -> None:
    assert f"`{code}`" in read_doc("errors.md")


def test_error_classes_are_found() -> None:
    exported = {getattr(errors, name) for name in errors.__all__}
    assert exported <= set(auth_error_classes())


@pytest.mark.parametrize(
    "route",
    sorted(
        str(pattern.pattern)
        for pattern in urls.urlpatterns
        if isinstance(pattern, URLPattern) and pattern.name
    ),
)
def test_every_url_is_documented_by_its_path(route: str) -> None:
    # The path on its own, not as the tail of a longer one.
    assert re.search(rf"(?<![\w/-]){re.escape(route)}", read_doc("endpoints.md"))


@pytest.mark.parametrize(
    "name", sorted(name for name in signals.__all__ if name != "EVENT_SIGNALS")
)
def test_every_signal_is_documented(name: str) -> None:
    assert f"`{name}`" in read_doc("signals.md")


def check_ids() -> list[str]:
    source = CHECKS_SOURCE.read_text(encoding="utf-8")
    return sorted(set(re.findall(r"kinwise_auth\.[EW]\d{3}", source)))


def test_check_ids_are_found() -> None:
    assert check_ids()


@pytest.mark.parametrize("check_id", check_ids())
def test_every_check_id_is_documented(check_id: str) -> None:
    assert check_id in read_doc("settings.md")
