"""The demo SPA: a page on another origin signing in through the browser transport.

The demo launcher (``run_demo.py``, what ``make demo`` runs; test_demo_page goes
through ``make`` itself) serves the example project on one port and the SPA, plain
HTML and JavaScript, on another: ``http://localhost:<SPA_PORT>/`` calling
``http://localhost:<PORT>/api/v1/auth/browser/`` with ``credentials: "include"``.
The two are different origins but the same site (ports do not count), so the
SameSite=Lax refresh cookie flows, CORS lets the page read the answers, and CSRF
is what stops other pages of the site.

In headless Chromium, with a verified account registered through the API and its
dev mailbox:

* the sign-in answer holds the access token and no refresh token; the refresh
  token is in HttpOnly cookies, never in ``document.cookie`` nor in storage;
* a reload restores the session through ``POST token/refresh/`` (the request
  carries the cookie, the SPA's Origin and X-CSRFToken; the cookie rotates);
* a form auto-posted from a third origin to ``token/refresh/`` and to
  ``logout/`` sends the cookies (same site) but is refused, 403 ``csrf_failed``,
  and the session still works afterwards;
* logout clears the cookies, and a reload shows the SPA signed out.

Screenshots go to ``artifacts/screenshots/spa-*.png``.
"""

from __future__ import annotations

import html
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.chromium import chromium, shot
from tests.support.example_project import EXAMPLE_DIR, demo_env
from tests.support.http import post_json, request_json, status_of
from tests.support.processes import CollectedProcess
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

pytestmark = pytest.mark.browser

START_TIMEOUT = 180.0  # seconds: migrations on a fresh SQLite file, then 3 servers
MAIL_TIMEOUT = 30.0
PASSWORD = "correct-Horse-battery-9"
ALICE = "spa-alice@example.com"
BROWSER_PREFIX = "/api/v1/auth/browser/"
REFRESH_COOKIES = {"kinwise_refresh", "kinwise_refresh_logout"}


@dataclass(frozen=True)
class Demo:
    process: CollectedProcess
    api: str  # http://localhost:<PORT>
    spa: str  # http://localhost:<SPA_PORT>

    @property
    def browser_api(self) -> str:
        return self.api + BROWSER_PREFIX


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """The launcher with nothing reachable (SQLite, embedded broker and cache),
    on spare ports; up once the SPA and the API answer and the worker runs."""
    env = demo_env(tmp_path)
    process = CollectedProcess(
        [sys.executable, "run_demo.py"], cwd=EXAMPLE_DIR, env=env, new_session=True
    )
    try:
        up = Demo(
            process,
            api=f"http://localhost:{env['PORT']}",
            spa=f"http://localhost:{env['SPA_PORT']}",
        )
        loopback = f"http://127.0.0.1:{env['PORT']}{BROWSER_PREFIX}csrf/"

        def running() -> None:
            if process.process.poll() is not None:
                pytest.fail(f"the demo exited early:\n{process.output[-6000:]}")

        wait_until(
            lambda: (
                " ready." in process.output
                and status_of(f"http://127.0.0.1:{env['SPA_PORT']}/") == 200
                and status_of(loopback) == 200
            ),
            timeout=START_TIMEOUT,
            what="the demo's API, SPA and worker up",
            interval=0.25,
            check=running,
            details=lambda: process.output[-6000:],
        )
        assert f"  SPA       {up.spa}/   " in process.output, process.output
        yield up
    finally:
        try:
            process.interrupt(timeout=30)
        finally:
            process.kill()


class ForgedForm(BaseHTTPRequestHandler):
    """``/?to=<url>``: a page that posts a form to ``url`` as soon as it loads,
    as a page of another origin would to ride on the browser's cookies."""

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        target = html.escape(query["to"][0], quote=True)
        body = (
            "<!doctype html><title>Another origin</title>"
            f'<form method="post" action="{target}">'
            '<input type="hidden" name="refresh" value="forged">'
            "</form><script>document.forms[0].submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def third_origin() -> Iterator[str]:
    """``http://localhost:<port>``: neither the API's origin nor the SPA's, and
    not trusted, but the same site as both."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ForgedForm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def verified_account(api: str, email: str) -> None:
    """Register ``email`` (app transport), then follow the link of the
    verification email the worker put in the dev mailbox."""
    base = api.replace("localhost", "127.0.0.1")
    registered = post_json(
        f"{base}/api/v1/auth/register/",
        {"email": email, "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert registered.status == 201, registered

    def token() -> str | None:
        mailbox = request_json("GET", f"{base}/dev/mailbox.json?to={email}")
        for mail in mailbox.body["emails"]:
            if found := re.search(r"/verify-email\?token=([\w-]+)", mail["text"]):
                return found[1]
        return None

    link = wait_until(token, timeout=MAIL_TIMEOUT, what=f"the email to {email}")
    verified = post_json(f"{base}/api/v1/auth/verify-email/", {"token": link})
    assert verified.status == 200, verified


def ready(page: Page) -> None:
    """Until the SPA, just loaded, has restored its session or found none."""
    page.wait_for_function("document.body.dataset.ready === 'yes'")


def state(page: Page) -> str:
    return page.locator("#state").inner_text()


def refresh_cookies(context: BrowserContext) -> dict[str, dict[str, Any]]:
    return {
        cookie["name"]: dict(cookie)
        for cookie in context.cookies()
        if cookie["name"] in REFRESH_COOKIES
    }


def test_the_spa_signs_in_across_origins_and_forged_posts_are_refused(
    demo: Demo, third_origin: str
) -> None:
    verified_account(demo.api, ALICE)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)

        # Signed out: the load asked csrf/, then token/refresh/ (no cookie: 401).
        with page.expect_response(lambda r: r.url.endswith("/token/refresh/")) as first:
            page.goto(f"{demo.spa}/")
        ready(page)
        assert first.value.status == 401
        assert state(page) == "Signed out."
        assert page.locator("#api").inner_text() == demo.browser_api
        shot(page, "spa-01-signed-out")

        # Sign in: the access token in the answer, the refresh token in cookies.
        form = page.locator("#sign-in-form")
        form.locator('input[name="email"]').fill(ALICE)
        form.locator('input[name="password"]').fill(PASSWORD)
        with page.expect_response(lambda r: r.url.endswith("/login/")) as login:
            form.get_by_role("button", name="Sign in").click()
        answer = login.value
        assert answer.status == 200, answer.text()
        assert set(answer.json()) == {"access", "user"}, answer.text()
        assert answer.headers["access-control-allow-origin"] == demo.spa
        assert answer.headers["access-control-allow-credentials"] == "true"
        sent = answer.request.all_headers()
        assert sent["origin"] == demo.spa and sent["x-csrftoken"], sent
        page.wait_for_function(
            "document.querySelector('#state').textContent.startsWith('Signed in')"
        )
        assert state(page) == f"Signed in as {ALICE}."
        assert f'"email": "{ALICE}"' in page.locator("#me").inner_text()

        cookies = refresh_cookies(context)
        assert set(cookies) == REFRESH_COOKIES, context.cookies()
        for name, path in [
            ("kinwise_refresh", f"{BROWSER_PREFIX}token/refresh/"),
            ("kinwise_refresh_logout", f"{BROWSER_PREFIX}logout/"),
        ]:
            cookie = cookies[name]
            assert cookie["domain"] == "localhost" and cookie["path"] == path, cookie
            assert cookie["httpOnly"] and cookie["secure"], cookie
            assert cookie["sameSite"] == "Lax", cookie
        # JavaScript sees none of it: not in document.cookie, nothing stored.
        assert "kinwise_refresh" not in page.evaluate("document.cookie")
        assert page.evaluate("localStorage.length + sessionStorage.length") == 0
        shot(page, "spa-02-signed-in")

        # A reload forgets the access token; token/refresh/ restores the session
        # from the cookie, which rotates.
        before = cookies["kinwise_refresh"]["value"]
        with page.expect_response(lambda r: r.url.endswith("/token/refresh/")) as again:
            page.reload()
        ready(page)
        restored = again.value
        assert restored.status == 200, restored.text()
        assert set(restored.json()) == {"access"}
        headers = restored.request.all_headers()
        assert f"kinwise_refresh={before}" in headers.get("cookie", ""), headers
        assert headers["origin"] == demo.spa and headers["x-csrftoken"], headers
        assert state(page) == f"Signed in as {ALICE}."
        rotated = refresh_cookies(context)
        assert rotated["kinwise_refresh"]["value"] not in ("", before)
        assert "kinwise_refresh" not in page.evaluate("document.cookie")
        shot(page, "spa-03-restored-on-reload")

        # A page of a third origin posts forms to token/refresh/ and logout/: the
        # browser sends the cookies along (same site), the CSRF check refuses.
        forged = context.new_page()
        for path, cookie, name in [
            ("token/refresh/", "kinwise_refresh", "spa-04-forged-refresh-refused"),
            ("logout/", "kinwise_refresh_logout", "spa-05-forged-logout-refused"),
        ]:
            target = demo.browser_api + path
            query = urllib.parse.urlencode({"to": target})
            with forged.expect_response(
                lambda r, target=target: r.url == target
            ) as refused:
                forged.goto(f"{third_origin}/?{query}")
            assert refused.value.request.method == "POST"
            assert refused.value.status == 403, refused.value.text()
            assert refused.value.json()["code"] == "csrf_failed"
            sent = refused.value.request.all_headers()
            assert sent["origin"] == third_origin, sent
            assert f"{cookie}=" in sent.get("cookie", ""), sent
            forged.wait_for_url(target)
            assert '"csrf_failed"' in forged.locator("body").inner_text()
            shot(forged, name)
        forged.close()
        assert refresh_cookies(context) == rotated  # neither used nor cleared

        # The session still works: me/ with the access token, and a reload.
        with page.expect_response(lambda r: r.url.endswith("/me/")) as me:
            page.get_by_role("button", name="Who am I (me/)").click()
        assert me.value.status == 200
        shot(page, "spa-06-still-signed-in")
        with page.expect_response(lambda r: r.url.endswith("/token/refresh/")) as again:
            page.reload()
        ready(page)
        assert again.value.status == 200, again.value.text()
        assert state(page) == f"Signed in as {ALICE}."

        # Logout: the session ends and the cookies are cleared; a reload finds none.
        with page.expect_response(lambda r: r.url.endswith("/logout/")) as logout:
            page.get_by_role("button", name="Log out").click()
        assert logout.value.status == 205
        page.wait_for_function(
            "document.querySelector('#state').textContent === 'Signed out.'"
        )
        assert refresh_cookies(context) == {}, context.cookies()
        shot(page, "spa-07-logged-out")
        with page.expect_response(lambda r: r.url.endswith("/token/refresh/")) as last:
            page.reload()
        ready(page)
        assert last.value.status == 401
        assert "kinwise_refresh" not in last.value.request.all_headers().get(
            "cookie", ""
        )
        assert state(page) == "Signed out."
        assert page.locator("#sign-in-form").is_visible()
        shot(page, "spa-08-reloaded-signed-out")
        context.close()
