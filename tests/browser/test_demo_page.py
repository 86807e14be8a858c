"""The demo, as a person meets it: the README's ``make demo`` on a machine with no
servers, then the whole journey clicked through the demo page in headless Chromium.

``make demo`` builds ``.venv`` (if missing), installs the package and the example
project, and runs ``demo.py``, here pointed at closed ports for Redis and
PostgreSQL, so it falls back to SQLite, kombu's filesystem broker and a file cache
(in a temporary ``DEMO_DIR``), and starts web, worker and beat. The page calls the
real API; the worker's emails land in the dev mailbox, whose panel on the page shows
them with working links. Nothing is mocked. Screenshots of each step are saved
under ``artifacts/screenshots/`` (see the README).

Debian's Chromium (``/usr/bin/chromium``) drives it through Playwright; under
``CI=true`` a missing browser fails the run, elsewhere the test skips.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..example_tools import settings_env_names

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Seconds: a first run creates .venv and installs from the package index.
START_TIMEOUT = 600.0
MAIL_TIMEOUT = 30.0
PASSWORD = "correct-Horse-battery-9"
NEW_PASSWORD = "another-Staple-lamp-42"
ALICE = "alice@example.com"
BOB = "bob@example.com"


pytestmark = pytest.mark.browser


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(reason)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoProcess:
    """``make demo`` in a subprocess; its output is collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            ["make", "demo"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_page(self, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"make demo exited early:\n{self.output[-6000:]}")
            try:
                with opener.open(url, timeout=2) as answer:
                    if answer.status == 200 and "worker" in self.output:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        pytest.fail(f"the demo page never answered at {url}:\n{self.output[-6000:]}")

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it (to make and demo.py); make's status."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.reader.join(timeout=5)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[DemoProcess, str]]:
    names = settings_env_names()
    env = {k: v for k, v in os.environ.items() if k not in names}
    port = closed_port()
    env.update(
        PORT=str(port),
        ENV_FILE="",  # no developer's .env
        DEMO_DIR=str(tmp_path / "demo"),
        DEMO_LOCAL_REDIS=f"redis://127.0.0.1:{closed_port()}",
        DEMO_LOCAL_POSTGRES=f"127.0.0.1:{closed_port()}",
        PYTHONDONTWRITEBYTECODE="1",
        NO_COLOR="1",
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = DemoProcess(env)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.kill()


@pytest.fixture
def browser_page() -> Iterator[Page]:
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def wait_for_mail(page: Page, to: str, subject: str) -> Locator:
    """Click "Check mail" (filtered to ``to``) until ``subject`` shows; its item."""
    mailbox = page.locator("#mailbox")
    mailbox.locator('input[name="to"]').fill(to)
    item = mailbox.locator(".email", has_text=subject).first
    deadline = time.monotonic() + MAIL_TIMEOUT
    while time.monotonic() < deadline:
        mailbox.get_by_role("button", name="Check mail").click()
        page.wait_for_timeout(300)
        if item.count():
            return item
        time.sleep(0.5)
    pytest.fail(f"no email {subject!r} for {to} within {MAIL_TIMEOUT:.0f}s")


def last_answer(page: Page) -> str:
    """The newest API answer the page shows: status line and body."""
    return page.locator("#log .answer").first.inner_text()


def submit(page: Page, form: str, button: str, **values: str) -> str:
    """Fill ``form``'s fields, click ``button``, return the API answer shown."""
    section = page.locator(f"#{form}")
    before = page.locator("#log .answer").count()
    for name, value in values.items():
        section.locator(f'input[name="{name}"]').fill(value)
    section.get_by_role("button", name=button).click()
    page.wait_for_function(
        f"document.querySelectorAll('#log .answer').length > {before}"
    )
    return last_answer(page)


def click(page: Page, button: str) -> str:
    before = page.locator("#log .answer").count()
    page.get_by_role("button", name=button).click()
    page.wait_for_function(
        f"document.querySelectorAll('#log .answer').length > {before}"
    )
    return last_answer(page)


def link_done(page: Page) -> None:
    """Until the page has acted on the token of the link it was opened from."""
    page.wait_for_function(
        "!document.querySelector('#link-title').textContent.endsWith('…')"
    )


def test_the_whole_journey_in_the_browser(
    demo: tuple[DemoProcess, str], browser_page: Page
) -> None:
    process, base = demo
    process.wait_for_page(f"{base}/")
    out = process.output
    assert "Broker    filesystem://" in out, out
    assert "Database  SQLite" in out, out
    assert f"Demo      {base}/" in out, out
    page = browser_page
    page.goto(f"{base}/")
    shot(page, "01-demo-page")

    # Register; the verification email arrives; its link verifies.
    answer = submit(
        page,
        "register-form",
        "Register",
        email=ALICE,
        password=PASSWORD,
        password_confirm=PASSWORD,
    )
    assert "→ 201" in answer and ALICE in answer, answer
    mail = wait_for_mail(page, ALICE, "Verify your KinWise demo account")
    shot(page, "02-verification-email")
    mail.locator("a").first.click()
    page.wait_for_url(re.compile(r"/verify-email\?token="))
    title = page.locator("#link-title")
    link_done(page)
    assert title.inner_text() == "Email verified: you can sign in."
    assert page.locator("#reset-confirm-form").is_hidden()
    assert "→ 200" in last_answer(page)
    shot(page, "03-verified")

    # Sign in with an emailed code.
    answer = submit(page, "otp-request-form", "Email me a code", email=ALICE)
    assert "→ 200" in answer and '"expires_in": 600' in answer, answer
    mail = wait_for_mail(page, ALICE, "Your KinWise demo login code")
    code = re.search(r"^\s+(\d{6})\s*$", mail.locator(".text").inner_text(), re.M)
    assert code, mail.inner_text()
    wrong = "000000" if code.group(1) != "000000" else "111111"
    answer = submit(page, "otp-verify-form", "Sign in", email=ALICE, code=wrong)
    assert "→ 400" in answer and '"code": "invalid_code"' in answer, answer
    answer = submit(page, "otp-verify-form", "Sign in", email=ALICE, code=code.group(1))
    assert "→ 200" in answer and '"refresh"' in answer, answer
    assert page.locator("#session-state").inner_text() == "yes"
    shot(page, "04-signed-in-by-code")

    # me/, refresh, logout; the logged-out refresh token is refused.
    answer = click(page, "Who am I (me/)")
    assert "→ 200" in answer and f'"email": "{ALICE}"' in answer, answer
    answer = click(page, "Refresh the token")
    assert "→ 200" in answer and '"access"' in answer, answer
    answer = click(page, "Log out")
    assert "→ 205" in answer, answer
    answer = click(page, "Refresh the token")
    assert "→ 401" in answer and '"code": "token_not_valid"' in answer, answer
    shot(page, "05-logged-out")

    # A wrong password: the API's error as it is.
    answer = submit(
        page, "login-form", "Sign in", email=ALICE, password="wrong-Password-1"
    )
    assert "→ 400" in answer and '"code": "invalid_credentials"' in answer, answer

    # Reset the password from its emailed link, then sign in with the new one.
    answer = submit(page, "password-reset-form", "Email me a reset link", email=ALICE)
    assert "→ 200" in answer, answer
    mail = wait_for_mail(page, ALICE, "Reset your KinWise demo password")
    mail.locator("a").first.click()
    page.wait_for_url(re.compile(r"/reset-password\?token="))
    answer = submit(
        page,
        "reset-confirm-form",
        "Set the new password",
        new_password=NEW_PASSWORD,
        new_password_confirm=NEW_PASSWORD,
    )
    assert "→ 200" in answer, answer
    assert title.inner_text() == "Password changed: sign in with the new one."
    shot(page, "06-password-reset")
    answer = submit(page, "login-form", "Sign in", email=ALICE, password=NEW_PASSWORD)
    assert "→ 200" in answer and '"access"' in answer, answer

    # Change the email: the link goes to the new address and confirms it.
    answer = submit(
        page,
        "email-change-form",
        "Send a confirmation link",
        new_email=BOB,
        password=NEW_PASSWORD,
    )
    assert "→ 200" in answer, answer
    mail = wait_for_mail(page, BOB, "Confirm your new KinWise demo email address")
    mail.locator("a").first.click()
    page.wait_for_url(re.compile(r"/confirm-email-change\?token="))
    link_done(page)
    assert title.inner_text() == "Email changed."
    assert f'"email": "{BOB}"' in last_answer(page)
    wait_for_mail(page, ALICE, "Your KinWise demo email address was changed")
    shot(page, "07-email-changed")

    # The full mailbox page: newest first, text and HTML parts.
    page.goto(f"{base}/dev/mailbox/")
    subjects = page.locator("article.email .subject").all_inner_texts()
    assert subjects[0] == "Your KinWise demo email address was changed", subjects
    assert subjects[-1] == "Verify your KinWise demo account", subjects
    assert page.locator("article.email iframe").count() == len(subjects)
    shot(page, "08-mailbox")

    # The API docs the page links to: Swagger UI, served without a CDN.
    page.goto(f"{base}/")
    page.get_by_role("link", name="API docs").click()
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.locator(".swagger-ui .opblock").count() == 16
    shot(page, "09-api-docs")

    # Ctrl-C stops web, worker and beat cleanly (make then reports the interrupt).
    process.interrupt()
    assert "demo: stopped." in process.output, process.output[-4000:]
    assert "did not stop in time" not in process.output
    with pytest.raises(OSError):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"{base}/", timeout=2
        )
