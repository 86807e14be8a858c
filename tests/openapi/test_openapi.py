"""The OpenAPI description (the ``openapi`` extra), as the example project serves it.

The schema must be valid and warning-free, name every endpoint with its errors,
and hold against the live API: schemathesis generates requests from it against a
running example project (rate limits off) and checks, explicitly, that no answer
is a server error and that every answer conforms to the schema.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kinwise_auth import urls
from tests.support.example_project import example_env, example_server, explain, run
from tests.support.http import OPENER, post_json

pytestmark = pytest.mark.openapi

PREFIX = "/api/v1/auth/"
PASSWORD = "correct-Horse-battery-9"
SIGNED_IN = {
    "me/",
    "password/change/",
    "email/change/",
    "account/delete/",
    "reauthenticate/",
    "sessions/",
    "sessions/revoke-others/",
    "sessions/{session_id}/",
}
SUCCESS = {
    "register/": "201",
    "logout/": "205",
    "account/delete/": "204",
    "sessions/{session_id}/": "204",
}


def served_env(tmp_path: Path) -> dict[str, str]:
    """The example project without servers: SQLite, a filesystem broker no worker
    reads, a local cache, and no rate limits (the generated requests would hit
    them at once)."""
    return example_env(
        tmp_path,
        CELERY_BROKER_URL="filesystem://",
        FILESYSTEM_BROKER_DIR=str(tmp_path / "broker"),
        CACHE_URL="locmemcache://",
        RATELIMIT_ENABLE="false",
        TMPDIR=str(tmp_path),
    )


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("schema")
    out = tmp_path / "schema.json"
    result = run(
        [
            "manage.py",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--format",
            "openapi-json",
            "--file",
            str(out),
        ],
        served_env(tmp_path),
    )
    assert result.returncode == 0, explain(result)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path.removeprefix(PREFIX), method, operation)
        for path, item in schema["paths"].items()
        if path.startswith(PREFIX)
        for method, operation in item.items()
    ]


def test_every_endpoint_is_described(schema: dict[str, Any]) -> None:
    described = {path for path, _, _ in operations(schema)}
    # Django's "<str:session_id>" is OpenAPI's "{session_id}".
    assert described == {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        for pattern in urls.urlpatterns
    }
    methods = {(path, method) for path, method, _ in operations(schema)}
    assert ("verify-email/", "get") in methods
    assert ("me/", "get") in methods


def test_every_operation_describes_its_answers(schema: dict[str, Any]) -> None:
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert SUCCESS.get(path, "200") in responses, where
        for code in ("400", "429", "503"):
            assert code in responses, (where, code)
        assert "Retry-After" in responses["429"]["headers"], where
        error = responses["429"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}, where
        if method == "post":
            assert {"413", "415"} <= set(responses), where
            assert "requestBody" in operation or path == "me/", where
        if path in SIGNED_IN:
            assert "401" in responses, where
            assert operation["security"] == [{"jwtAuth": []}], where
        else:
            assert operation["security"] == [{}], where
    error = schema["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"detail", "code"}


def test_sign_in_answers_name_the_user_payload(schema: dict[str, Any]) -> None:
    sign_in = schema["components"]["schemas"]["SignIn"]
    assert set(sign_in["required"]) == {"access", "refresh", "user"}


def test_swagger_ui_is_served(tmp_path: Path) -> None:
    with example_server(served_env(tmp_path)) as base:
        with OPENER.open(f"{base}/api/docs/", timeout=10) as answer:
            page = answer.read().decode()
        assert answer.status == 200
        assert "swagger-ui" in page.lower()


def register_account(base: str) -> str:
    """Register an account over the API; its address."""
    email = "schemathesis@example.com"
    answer = post_json(
        f"{base}{PREFIX}register/",
        {"email": email, "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert 200 <= answer.status < 300, answer.body
    return email


def test_schemathesis_finds_no_server_error_and_no_schema_break(
    tmp_path: Path,
) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is not installed"
    env = served_env(tmp_path)
    assert run(["manage.py", "migrate", "-v0"], env).returncode == 0
    with example_server(env) as base:
        email = register_account(base)
        verify = run(
            [
                "manage.py",
                "shell",
                "-v0",
                "-c",
                "from django.utils import timezone;"
                "from django.contrib.auth import get_user_model;"
                "from kinwise_auth.models import EmailIdentity;"
                "EmailIdentity.objects.update(verified_at=timezone.now());"
                "get_user_model()._default_manager.update(is_active=True)",
            ],
            env,
        )
        assert verify.returncode == 0, explain(verify)
        login = post_json(
            f"{base}{PREFIX}login/", {"email": email, "password": PASSWORD}
        )
        assert 200 <= login.status < 300, login.body
        access = login.body["access"]
        result = subprocess.run(
            [
                st,
                "run",
                f"{base}/api/schema/",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--header",
                f"Authorization: Bearer {access}",
                "--max-examples",
                os.environ.get("KINWISE_SCHEMATHESIS_EXAMPLES", "25"),
                "--workers",
                "1",
                "--seed",
                "20261202",
                "--no-color",
            ],
            cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    summary = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, summary
    assert "20 selected / 20 total" in result.stdout, summary
    assert " passed" in result.stdout and "failed" not in result.stdout, summary
