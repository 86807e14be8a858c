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
from kinwise_auth.urls import browser as browser_urls
from tests.support.example_project import example_env, example_server, explain, run
from tests.support.http import OPENER, post_json

pytestmark = pytest.mark.openapi

PREFIX = "/api/v1/auth/"
BROWSER = PREFIX + "browser/"
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
    "mfa/",
    "mfa/totp/setup/",
    "mfa/totp/confirm/",
    "mfa/totp/",
    "mfa/recovery-codes/",
    "reauthenticate/email-code/",
    "reauthenticate/passkey/options/",
    "passkeys/",
    "passkeys/{passkey_id}/",
    "passkeys/register/options/",
    "passkeys/register/",
}
# POST operations that read no body.
BODYLESS = {
    "reauthenticate/email-code/",
    "reauthenticate/passkey/options/",
    "passkeys/login/options/",
}
# The success status of a path, or of one method of it ("delete path"); 200 else.
SUCCESS = {
    "register/": "201",
    "logout/": "205",
    "account/delete/": "204",
    "sessions/{session_id}/": "204",
    "mfa/totp/": "204",
    "passkeys/register/": "201",
    "delete passkeys/{passkey_id}/": "204",
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


def operations(
    schema: dict[str, Any], prefix: str = PREFIX
) -> list[tuple[str, str, dict[str, Any]]]:
    """The operations of one transport: the app's (``PREFIX``) or the browser's."""
    return [
        (path.removeprefix(prefix), method, operation)
        for path, item in schema["paths"].items()
        if path.startswith(prefix)
        and (prefix == BROWSER or not path.startswith(BROWSER))
        for method, operation in item.items()
    ]


def openapi_paths(patterns: list[Any]) -> set[str]:
    # Django's "<str:session_id>" is OpenAPI's "{session_id}".
    return {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        for pattern in patterns
    }


def test_every_endpoint_of_both_transports_is_described(
    schema: dict[str, Any],
) -> None:
    described = {path for path, _, _ in operations(schema)}
    assert described == openapi_paths(urls.urlpatterns)
    in_browser = {path for path, _, _ in operations(schema, BROWSER)}
    assert in_browser == openapi_paths(browser_urls.urlpatterns)
    assert in_browser == described | {"csrf/"}
    methods = {(path, method) for path, method, _ in operations(schema)}
    assert ("verify-email/", "get") in methods
    assert ("me/", "get") in methods


@pytest.mark.parametrize("prefix", [PREFIX, BROWSER], ids=["app", "browser"])
def test_every_operation_describes_its_answers(
    schema: dict[str, Any], prefix: str
) -> None:
    browser = prefix == BROWSER
    for path, method, operation in operations(schema, prefix):
        responses = operation["responses"]
        where = f"{method.upper()} {prefix}{path}"
        success = SUCCESS.get(f"{method} {path}", SUCCESS.get(path, "200"))
        assert success in responses, where
        for code in ("400", "429", "503"):
            assert code in responses, (where, code)
        assert "Retry-After" in responses["429"]["headers"], where
        error = responses["429"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/Error"}, where
        takes_cookie = browser and path in ("token/refresh/", "logout/")
        if method == "post" and path not in BODYLESS:
            assert {"413", "415"} <= set(responses), where
            assert ("requestBody" in operation) is not takes_cookie, where
        if browser and method in ("post", "patch", "delete"):
            # Django's CSRF check, on every unsafe request of the browser's.
            assert "403" in responses, where
            headers = {
                p["name"] for p in operation["parameters"] if p["in"] == "header"
            }
            assert "X-CSRFToken" in headers, where
        if takes_cookie:
            cookies = {
                p["name"] for p in operation["parameters"] if p["in"] == "cookie"
            }
            assert cookies & {"kinwise_refresh", "kinwise_refresh_logout"}, where
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


def test_the_browser_transport_answers_no_refresh_token(
    schema: dict[str, Any],
) -> None:
    components = schema["components"]["schemas"]
    for name in ("BrowserSignIn", "BrowserRefreshed", "BrowserPasswordChanged"):
        assert "refresh" not in components[name]["properties"], name
    assert set(components["BrowserSignIn"]["required"]) == {"access", "user"}
    login = schema["paths"][BROWSER + "login/"]["post"]
    answer = login["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/BrowserSignInAnswer"}
    assert {"$ref": "#/components/schemas/BrowserSignIn"} in components[
        "BrowserSignInAnswer"
    ]["oneOf"]


def test_a_sign_in_may_answer_an_mfa_token(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["SignInAnswer"]["oneOf"] == [
        {"$ref": "#/components/schemas/SignIn"},
        {"$ref": "#/components/schemas/MfaRequired"},
    ]
    assert set(components["MfaRequired"]["required"]) == {
        "mfa_required",
        "mfa_token",
        "methods",
    }


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
        # Ending a session (DELETE sessions/{id}) may end the very one whose
        # token the run uses (schemathesis reuses the ids GET sessions/
        # answers): the DELETEs run apart, with a token of their own, so the
        # other signed-in operations are exercised signed in.
        results = [
            schemathesis(st, base, email, tmp_path, "--exclude-method", "DELETE"),
            schemathesis(st, base, email, tmp_path, "--include-method", "DELETE"),
        ]
    # Both transports: the app's 38 operations, the browser's 38 and csrf/;
    # six of them DELETEs.
    for result, selected in zip(results, ("71 selected", "6 selected"), strict=True):
        summary = result.stdout[-6000:] + result.stderr[-2000:]
        assert result.returncode == 0, summary
        assert f"{selected} / 77 total" in result.stdout, summary
        assert " passed" in result.stdout, summary
        assert not re.search(r"\b\d+ failed\b|❌", result.stdout), summary
        # Signed in throughout: no operation met only 401s but the browser's
        # token/refresh/, which has no refresh cookie to read here.
        assert only_unauthorized(result.stdout) <= {f"POST {BROWSER}token/refresh/"}, (
            summary
        )


def only_unauthorized(report: str) -> set[str]:
    """The operations schemathesis reports as having answered nothing but 401."""
    block = re.search(
        r"401 Unauthorized \(\d+ operations?\):\n((?:[ \t]+- .+\n)+)", report
    )
    if block is None:
        return set()
    return {line.strip()[2:] for line in block.group(1).splitlines()}


def schemathesis(
    st: str, base: str, email: str, tmp_path: Path, *selection: str
) -> subprocess.CompletedProcess[str]:
    """Run schemathesis on the ``selection`` of operations, signed in as
    ``email`` afresh, with the browser transport's CSRF pair."""
    login = post_json(f"{base}{PREFIX}login/", {"email": email, "password": PASSWORD})
    assert 200 <= login.status < 300, login.body
    # A request with no Origin, over plain HTTP, is judged by the token alone.
    with OPENER.open(f"{base}{BROWSER}csrf/", timeout=10) as answer:
        csrf_token = json.load(answer)["csrf_token"]
        cookie = answer.headers["Set-Cookie"].split(";", 1)[0]
    return subprocess.run(
        [
            st,
            "run",
            f"{base}/api/schema/",
            *selection,
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--header",
            f"Authorization: Bearer {login.body['access']}",
            "--header",
            f"Cookie: {cookie}",
            "--header",
            f"X-CSRFToken: {csrf_token}",
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
