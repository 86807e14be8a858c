"""The demo, as a person meets it: the README's ``make demo`` on a machine with no
servers, then the whole journey clicked through the demo page in headless Chromium.

``make demo`` builds ``.venv`` (if missing), installs the package and the example
project, and runs ``run_demo.py``, here pointed at closed ports for Redis and
PostgreSQL, so it falls back to SQLite, kombu's filesystem broker and a file cache
(in a temporary ``DEMO_DIR``), and starts web, worker and beat. The page calls the
real API, through its browser transport: the refresh token only ever in an
HttpOnly cookie, the access token in memory, the session restored on a reload.
The worker's emails land in the dev mailbox, whose panel on the page shows them
with working links. Nothing is mocked. Screenshots of each step are saved under
``artifacts/screenshots/`` (see the README).

Besides the journey, what a newcomer meets when something goes wrong: each form
shows its own answer right under it (a field error by field, an error's detail and
code), a used or replaced link says so and offers the next step (a new verification
or reset link, requested from the page), and a rate-limited form says how long to
wait, from the ``Retry-After`` header.

Debian's Chromium (``/usr/bin/chromium``) drives it through Playwright; under
``CI=true`` a missing browser fails the run, elsewhere the test skips (see
:mod:`tests.browser.chromium`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.chromium import chromium, shot
from tests.support.example_project import demo_env
from tests.support.http import OPENER, status_of
from tests.support.processes import REPO_ROOT, CollectedProcess
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

# Seconds: a first run creates .venv and installs from the package index.
START_TIMEOUT = 600.0
MAIL_TIMEOUT = 30.0
PASSWORD = "correct-Horse-battery-9"
NEW_PASSWORD = "another-Staple-lamp-42"
THIRD_PASSWORD = "third-Kettle-violin-7"
ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
VERIFY_SUBJECT = "Verify your KinWise demo account"
# Registrations tried before a 429 must have come (the per-IP budgets are 3 and 20/h).
MAX_REGISTRATIONS = 20


pytestmark = pytest.mark.browser


class DemoProcess(CollectedProcess):
    """``make demo`` in a subprocess; its output is collected line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(["make", "demo"], cwd=REPO_ROOT, env=env, new_session=True)

    def wait_for_page(self, url: str) -> None:
        """Until ``url`` answers 200 and the worker has started."""

        def running() -> None:
            if self.process.poll() is not None:
                pytest.fail(f"make demo exited early:\n{self.output[-6000:]}")

        wait_until(
            lambda: "worker" in self.output and status_of(url) == 200,
            timeout=START_TIMEOUT,
            what=f"the demo page answering at {url}",
            interval=0.25,
            check=running,
            details=lambda: self.output[-6000:],
        )


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[DemoProcess, str]]:
    env = demo_env(tmp_path)  # the example's own settings, no developer's .env
    process = DemoProcess(env)
    try:
        yield process, f"http://127.0.0.1:{env['PORT']}"
    finally:
        # Ctrl-C first: the launcher stops its servers, each in a session of its
        # own that a SIGKILL of this group would leave running after a failure.
        try:
            process.interrupt(timeout=30)
        finally:
            process.kill()


@pytest.fixture
def browser_page() -> Iterator[Page]:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(15_000)
        yield page


def wait_for_mail(page: Page, to: str, subject: str, count: int = 1) -> Locator:
    """Click "Check mail" (filtered to ``to``) until ``count`` emails titled
    ``subject`` show; the newest one's item."""
    mailbox = page.locator("#mailbox")
    mailbox.locator('input[name="to"]').fill(to)
    items = mailbox.locator(".email", has_text=subject)

    def shown() -> Locator | None:
        mailbox.get_by_role("button", name="Check mail").click()
        page.wait_for_timeout(300)
        return items.first if items.count() >= count else None

    return wait_until(
        shown,
        timeout=MAIL_TIMEOUT,
        what=f"{count} email(s) {subject!r} for {to}",
        interval=0.5,
    )


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


def beside(page: Page, form: str) -> str:
    """The answer shown right under ``form`` (the link section's, for "link")."""
    return page.locator(f"#{form}-answer").inner_text()


def field_error(page: Page, form: str, field: str) -> str:
    """The messages listed under ``form`` for ``field``; its input is marked invalid."""
    item = page.locator(f'#{form}-answer li[data-field="{field}"]')
    assert item.count() == 1, beside(page, form)
    invalid = page.locator(f'#{form} input[name="{field}"]')
    assert invalid.get_attribute("aria-invalid") == "true"
    assert invalid.get_attribute("aria-describedby") == f"{form}-answer"
    return item.inner_text()


def assert_wait_shown(page: Page, form: str) -> None:
    """The page turned the 429's Retry-After into a wait in words, beside ``form``."""
    log_line = page.locator("#log .answer .status").first.inner_text()
    retry_after = re.search(r"→ 429 \(Retry-After: (\d+)\)", log_line)
    assert retry_after, log_line
    seconds = int(retry_after.group(1))
    wait = page.locator(f"#{form}-answer .wait").inner_text()
    shown = re.fullmatch(
        r"Too many attempts: try again in "
        r"(?:(\d+) hours?)? ?(?:(\d+) minutes?)?(?:(\d+) seconds?)?\.",
        wait,
    )
    assert shown and any(shown.groups()), wait
    hours, minutes, secs = (int(part or 0) for part in shown.groups())
    # Counted down since the answer came, by a few seconds at most.
    if shown.group(3):
        assert seconds - 10 <= secs <= seconds, (wait, seconds)
    else:
        total = hours * 60 + minutes
        assert math.ceil((seconds - 10) / 60) <= total <= math.ceil(seconds / 60), (
            wait,
            seconds,
        )


def ready(page: Page) -> None:
    """Until the page, just loaded, has restored the session (or found none) and
    acted on the token of the link it was opened from: its calls are logged."""
    page.wait_for_function("document.body.dataset.ready === 'yes'")


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    ready(page)


def link_done(page: Page) -> None:
    """Until the page has acted on the token of the link it was opened from."""
    ready(page)
    page.wait_for_function(
        "!document.querySelector('#link-title').textContent.endsWith('…')"
    )


def refresh_cookies(page: Page) -> list[dict[str, object]]:
    """The browser's refresh-token cookies (kinwise_refresh, kinwise_refresh_logout)."""
    return [
        dict(cookie)
        for cookie in page.context.cookies()
        if cookie["name"].startswith("kinwise_refresh")
    ]


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
    open_page(page, f"{base}/")
    # No session yet: the page asked csrf/, then token/refresh/ (401, no cookie).
    assert page.locator("#session-state").inner_text() == "no"
    assert "→ 401" in last_answer(page) and "token/refresh/" in last_answer(page)
    shot(page, "01-demo-page")

    # A refused registration: the field's message right under the register form.
    answer = submit(
        page,
        "register-form",
        "Register",
        email=ALICE,
        password=PASSWORD,
        password_confirm=NEW_PASSWORD,
    )
    assert "→ 400" in answer and "Passwords do not match." in answer, answer
    assert beside(page, "register-form").startswith("Refused (400):")
    message = field_error(page, "register-form", "password_confirm")
    expected = "Password again (password_confirm): Passwords do not match."
    assert message == expected, message
    shot(page, "01a-register-refused")

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
    assert beside(page, "register-form").startswith(
        "Done (201): Registration successful."
    )
    confirm = page.locator('#register-form input[name="password_confirm"]')
    assert confirm.get_attribute("aria-invalid") is None
    mail = wait_for_mail(page, ALICE, VERIFY_SUBJECT)
    shot(page, "02-verification-email")
    verify_link = mail.locator("a").first.get_attribute("href")
    assert verify_link and re.search(r"/verify-email\?token=[\w-]+$", verify_link)
    mail.locator("a").first.click()
    page.wait_for_url(re.compile(r"/verify-email\?token="))
    title = page.locator("#link-title")
    link_done(page)
    assert title.inner_text() == "Email verified: you can sign in."
    assert page.locator("#reset-confirm-form").is_hidden()
    assert "→ 200" in last_answer(page)
    assert beside(page, "link") == "Done (200): Email verified successfully"
    assert page.locator("#link-resend-form").is_hidden()
    shot(page, "03-verified")

    # The welcome email's "Sign in at <url>." links the address, not its full stop.
    welcome = wait_for_mail(page, ALICE, "Welcome to KinWise demo!")
    link = welcome.locator("a").first
    href = link.get_attribute("href") or ""
    assert href.rstrip("/") == base and link.inner_text() == href, href
    assert f"Sign in at {href}." in welcome.locator(".text").inner_text()

    # The used link again: it says so, and offers a new verification link.
    page.goto(verify_link)
    link_done(page)
    assert title.inner_text() == "This link was already used: the address is verified."
    assert '"message": "Email already verified"' in last_answer(page)
    resend = page.locator("#link-resend-form")
    assert resend.is_visible()
    assert resend.locator('input[name="email"]').input_value() == ALICE
    assert page.locator("#link-next").inner_text().startswith("Sign in below")
    answer = submit(page, "link-resend-form", "Send a new verification link")
    assert "→ 200" in answer, answer
    assert beside(page, "link-resend-form").startswith(
        "Done (200): If the email exists, a verification email has been sent."
    )
    shot(page, "03a-used-link")

    # Sign in with an emailed code.
    answer = submit(page, "otp-request-form", "Email me a code", email=ALICE)
    assert "→ 200" in answer and '"expires_in": 600' in answer, answer
    mail = wait_for_mail(page, ALICE, "Your KinWise demo login code")
    code = re.search(r"^\s+(\d{6})\s*$", mail.locator(".text").inner_text(), re.M)
    assert code, mail.inner_text()
    wrong = "000000" if code.group(1) != "000000" else "111111"
    answer = submit(page, "otp-verify-form", "Sign in", email=ALICE, code=wrong)
    assert "→ 400" in answer and '"code": "invalid_code"' in answer, answer
    assert beside(page, "otp-verify-form") == (
        "Refused (400): Invalid email or OTP code. invalid_code"
    )
    shot(page, "04a-wrong-code")
    answer = submit(page, "otp-verify-form", "Sign in", email=ALICE, code=code.group(1))
    # The access token in the answer; the refresh token only in HttpOnly cookies.
    assert "→ 200" in answer and '"access"' in answer, answer
    assert '"refresh"' not in answer, answer
    assert beside(page, "otp-verify-form") == f"Done (200): Signed in as {ALICE}."
    assert page.locator("#session-state").inner_text() == "yes"
    cookies = refresh_cookies(page)
    assert {c["name"] for c in cookies} == {"kinwise_refresh", "kinwise_refresh_logout"}
    assert all(c["httpOnly"] and c["sameSite"] == "Lax" for c in cookies), cookies
    assert "kinwise_refresh" not in page.evaluate("document.cookie")
    assert page.evaluate("JSON.stringify(localStorage)").count("eyJ") == 0
    shot(page, "04-signed-in-by-code")

    # A reload forgets the access token; the refresh cookie restores the session.
    with page.expect_response(lambda r: r.url.endswith("/token/refresh/")) as restored:
        page.reload()
    assert restored.value.status == 200
    ready(page)
    assert page.locator("#session-state").inner_text() == "yes"

    # me/, refresh, logout; the cookie is gone then, so a refresh is refused.
    answer = click(page, "Who am I (me/)")
    assert "→ 200" in answer and f'"email": "{ALICE}"' in answer, answer
    answer = click(page, "Refresh the token")
    assert "→ 200" in answer and '"access"' in answer, answer
    answer = click(page, "Log out")
    assert "→ 205" in answer, answer
    assert refresh_cookies(page) == []  # cleared by the answer
    answer = click(page, "Refresh the token")
    assert "→ 401" in answer and '"code": "token_not_valid"' in answer, answer
    assert beside(page, "session-buttons").startswith("Refused (401):")
    assert beside(page, "session-buttons").endswith("token_not_valid")
    shot(page, "05-logged-out")

    # A wrong password: the API's error as it is, and under the form.
    answer = submit(
        page, "login-form", "Sign in", email=ALICE, password="wrong-Password-1"
    )
    assert "→ 400" in answer and '"code": "invalid_credentials"' in answer, answer
    assert beside(page, "login-form") == (
        "Refused (400): Invalid email or password. invalid_credentials"
    )

    # Reset the password from its emailed link, then sign in with the new one.
    answer = submit(page, "password-reset-form", "Email me a reset link", email=ALICE)
    assert "→ 200" in answer, answer
    mail = wait_for_mail(page, ALICE, "Reset your KinWise demo password")
    mail.locator("a").first.click()
    page.wait_for_url(re.compile(r"/reset-password\?token="))
    ready(page)
    reset_link = page.url
    answer = submit(
        page,
        "reset-confirm-form",
        "Set the new password",
        new_password="password",
        new_password_confirm="password",
    )
    assert "→ 400" in answer, answer
    assert "This password is too common." in field_error(
        page, "reset-confirm-form", "new_password"
    )
    answer = submit(
        page,
        "reset-confirm-form",
        "Set the new password",
        new_password=NEW_PASSWORD,
        new_password_confirm=NEW_PASSWORD,
    )
    assert "→ 200" in answer, answer
    assert title.inner_text() == "Password changed: sign in with the new one."
    assert beside(page, "reset-confirm-form") == (
        "Done (200): Your password has been reset. You can now sign in."
    )
    shot(page, "06-password-reset")

    # The used reset link: it says so, and offers a new one.
    open_page(page, reset_link)
    answer = submit(
        page,
        "reset-confirm-form",
        "Set the new password",
        new_password=THIRD_PASSWORD,
        new_password_confirm=THIRD_PASSWORD,
    )
    assert "→ 400" in answer and '"code": "invalid_token"' in answer, answer
    assert page.locator("#reset-confirm-form").is_hidden()
    assert title.inner_text() == (
        "This reset link was already used, or a newer one replaced it."
    )
    assert beside(page, "reset-confirm-form").endswith("invalid_token")
    answer = submit(
        page, "link-reset-request-form", "Email me a new reset link", email=ALICE
    )
    assert "→ 200" in answer, answer
    assert beside(page, "link-reset-request-form").startswith("Done (200):")
    wait_for_mail(page, ALICE, "Reset your KinWise demo password", count=2)
    shot(page, "06a-used-reset-link")
    answer = submit(page, "login-form", "Sign in", email=ALICE, password=NEW_PASSWORD)
    assert "→ 200" in answer and '"access"' in answer, answer

    # Change the password: a weak one is refused under the form, then a good one.
    answer = submit(
        page,
        "password-change-form",
        "Change the password",
        current_password=NEW_PASSWORD,
        new_password="12345678",
        new_password_confirm="12345678",
    )
    assert "→ 400" in answer, answer
    message = field_error(page, "password-change-form", "new_password")
    assert "This password is too common." in message, message
    assert "This password is entirely numeric." in message, message
    shot(page, "06b-weak-password")
    answer = submit(
        page,
        "password-change-form",
        "Change the password",
        current_password=NEW_PASSWORD,
        new_password=THIRD_PASSWORD,
        new_password_confirm=THIRD_PASSWORD,
    )
    assert "→ 200" in answer, answer
    assert beside(page, "password-change-form").startswith(
        "Done (200): Your password has been changed."
    )

    # Change the email: the link goes to the new address and confirms it.
    answer = submit(
        page,
        "email-change-form",
        "Send a confirmation link",
        new_email=BOB,
        password=THIRD_PASSWORD,
    )
    assert "→ 200" in answer, answer
    assert beside(page, "email-change-form").startswith("Done (200):")
    mail = wait_for_mail(page, BOB, "Confirm your new KinWise demo email address")
    mail.locator("a").first.click()
    page.wait_for_url(re.compile(r"/confirm-email-change\?token="))
    link_done(page)
    assert title.inner_text() == "Email changed."
    assert f'"email": "{BOB}"' in last_answer(page)
    # The forms and the mailbox panel follow the new address.
    emails = page.locator('main input[name="email"]')
    assert emails.count() >= 6
    for index in range(emails.count()):
        assert emails.nth(index).input_value() == BOB
    assert page.locator('#mailbox input[name="to"]').input_value() == BOB
    assert page.locator("#emails .email .subject").first.inner_text() == (
        "Confirm your new KinWise demo email address"
    )
    shot(page, "07-email-changed")
    wait_for_mail(page, ALICE, "Your KinWise demo email address was changed")

    # The full mailbox page: newest first, text and HTML parts.
    page.goto(f"{base}/dev/mailbox/")
    subjects = page.locator("article.email .subject").all_inner_texts()
    assert subjects[0] == "Your KinWise demo email address was changed", subjects
    assert subjects[-1] == "Verify your KinWise demo account", subjects
    assert page.locator("article.email iframe").count() == len(subjects)
    shot(page, "08-mailbox")

    # The API docs the page links to: Swagger UI, served without a CDN.
    open_page(page, f"{base}/")
    page.get_by_role("link", name="API docs").click()
    page.wait_for_selector(".swagger-ui .opblock")
    # One block per operation of the schema: both transports, the app's 38
    # (verify-email has GET and POST) and the browser's 39 (with csrf/).
    with OPENER.open(f"{base}/api/schema/?format=json", timeout=10) as answer:
        paths = json.load(answer)["paths"]
    methods = {"get", "post", "put", "patch", "delete"}
    operations = sum(len(methods & set(item)) for item in paths.values())
    assert operations == 77, sorted(paths)
    assert page.locator(".swagger-ui .opblock").count() == operations
    shot(page, "09-api-docs")

    # A link a newer one replaced: it says so; a new link, asked from there, works.
    open_page(page, f"{base}/")
    answer = submit(
        page,
        "register-form",
        "Register",
        email=CAROL,
        password=PASSWORD,
        password_confirm=PASSWORD,
    )
    assert "→ 201" in answer, answer
    first = wait_for_mail(page, CAROL, VERIFY_SUBJECT).locator("a").first
    first_link = first.get_attribute("href")
    answer = submit(page, "resend-form", "Resend the verification email", email=CAROL)
    assert "→ 200" in answer, answer
    assert beside(page, "resend-form").startswith("Done (200):")
    wait_for_mail(page, CAROL, VERIFY_SUBJECT, count=2)
    assert first_link
    page.goto(first_link)
    link_done(page)
    assert title.inner_text() == "This verification link is no longer valid."
    assert beside(page, "link") == (
        "Refused (400): Invalid verification token. invalid_token"
    )
    resend = page.locator("#link-resend-form")
    assert resend.is_visible()
    assert resend.locator('input[name="email"]').input_value() == CAROL
    shot(page, "10-replaced-link")
    answer = submit(page, "link-resend-form", "Send a new verification link")
    assert "→ 200" in answer, answer
    newest = wait_for_mail(page, CAROL, VERIFY_SUBJECT, count=3).locator("a").first
    newest.click()
    page.wait_for_url(re.compile(r"/verify-email\?token="))
    link_done(page)
    assert title.inner_text() == "Email verified: you can sign in."
    shot(page, "11-new-link-verified")

    # Registering again and again: the register form says how long to wait.
    open_page(page, f"{base}/")
    for attempt in range(MAX_REGISTRATIONS):
        answer = submit(
            page,
            "register-form",
            "Register",
            email=f"newcomer{attempt}@example.com",
            password=PASSWORD,
            password_confirm=PASSWORD,
        )
        if "→ 429" in answer:
            break
        assert "→ 201" in answer, answer
    else:
        pytest.fail(f"no 429 after {MAX_REGISTRATIONS} registrations")
    assert '"code": "rate_limited"' in answer, answer
    assert beside(page, "register-form").startswith(
        "Refused (429): Too many attempts: try again in "
    )
    assert_wait_shown(page, "register-form")
    shot(page, "12-rate-limited")

    # Ctrl-C stops web, worker and beat cleanly (make then reports the interrupt).
    process.interrupt(timeout=30)
    assert "demo: stopped." in process.output, process.output[-4000:]
    assert "did not stop in time" not in process.output
    with pytest.raises(OSError):
        OPENER.open(f"{base}/", timeout=2)
