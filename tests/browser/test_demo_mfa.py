"""Two-step sign-in on the demo page, clicked through in headless Chromium.

The demo launcher (``run_demo.py``, what ``make demo`` runs; test_demo_page goes
through ``make`` itself) with nothing reachable: SQLite, the embedded broker and
cache, the worker's emails in the dev mailbox. A verified account, registered
through the API, then on the demo page:

* signs in with the password (one step: no app yet), is refused a set-up without
  a proof (403 ``reauthentication_required``, with the proofs it can give), steps
  up with a code from the ``reauthenticate/email-code/`` email and then sets up
  an authenticator app with no password: the page shows the QR code (an SVG) and
  the key; the test computes the app's code from the key with ``pyotp``, a wrong
  one is refused, the right one enables the app and brings ten recovery codes,
  shown once; ``GET mfa/`` reports it;
* signs out and in with the password: no tokens, the second-step form; a wrong
  code is refused, a code of a later time step than the confirming one signs in
  (the refresh token in HttpOnly cookies);
* signs out and in with an emailed code, then a recovery code, which is spent;
* with the app enabled, is refused a step-up by emailed code (a mailbox alone is
  no proof), gets new recovery codes with the password, and removes the app; a
  sign-in is one step again.

Screenshots go to ``artifacts/screenshots/mfa-*.png``.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.chromium import chromium, shot
from tests.browser.test_demo_page import (
    beside,
    click,
    last_answer,
    open_page,
    refresh_cookies,
    submit,
    wait_for_mail,
)
from tests.browser.test_spa import PASSWORD, verified_account
from tests.support.example_project import EXAMPLE_DIR, demo_env
from tests.support.http import status_of
from tests.support.processes import CollectedProcess
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

START_TIMEOUT = 180.0  # seconds: migrations on a fresh SQLite file, then 3 servers
DANA = "mfa-dana@example.com"
STEP = 30  # seconds: a TOTP time step
WRONG = "000000"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The launcher on spare ports; its page's address once it and the worker run."""
    env = demo_env(tmp_path)
    process = CollectedProcess(
        [sys.executable, "run_demo.py"], cwd=EXAMPLE_DIR, env=env, new_session=True
    )
    base = f"http://127.0.0.1:{env['PORT']}"
    try:

        def running() -> None:
            if process.process.poll() is not None:
                pytest.fail(f"the demo exited early:\n{process.output[-6000:]}")

        wait_until(
            lambda: " ready." in process.output and status_of(f"{base}/") == 200,
            timeout=START_TIMEOUT,
            what="the demo's web server and worker up",
            interval=0.25,
            check=running,
            details=lambda: process.output[-6000:],
        )
        yield base
    finally:
        try:
            process.interrupt(timeout=30)
        finally:
            process.kill()


class App:
    """The authenticator app, from the key the page shows. A code's time step,
    once accepted, is refused again (and so is any older one), and one step of
    skew is accepted: each code is of the step after the last one used."""

    def __init__(self, secret: str) -> None:
        import pyotp

        self.totp = pyotp.TOTP(secret)
        self.last_step = -1

    def code(self) -> str:
        step = max(int(time.time()) // STEP, self.last_step + 1)
        # At most one step ahead of the server's clock.
        while step > int(time.time()) // STEP + 1:
            time.sleep(0.5)
        self.last_step = step
        return self.totp.at(step * STEP)


def signed_in(page: Page) -> bool:
    return page.locator("#session-state").inner_text() == "yes"


def mfa_status(page: Page) -> str:
    answer = submit(page, "mfa-status-form", "Check the status (mfa/)")
    assert "→ 200" in answer, answer
    return page.locator("#mfa-status").inner_text()


def recovery_codes(page: Page) -> list[str]:
    assert page.locator("#recovery-codes").is_visible()
    return page.locator("#recovery-code-list li").all_inner_texts()


def log_out(page: Page) -> None:
    answer = click(page, "Log out")
    assert "→ 205" in answer, answer
    assert not signed_in(page)
    assert refresh_cookies(page) == []
    # The key and the recovery codes leave the screen with the session.
    assert page.locator("#recovery-codes").is_hidden()
    assert page.locator("#totp-setup").is_hidden()


def first_step(page: Page, form: str, **values: str) -> None:
    """Sign in with ``form``: right, but the account has an app: no tokens yet."""
    answer = submit(page, form, "Sign in", **values)
    assert "→ 200" in answer and '"mfa_required": true' in answer, answer
    assert '"access"' not in answer and '"mfa_token"' in answer, answer
    assert beside(page, form).startswith("Done (200): Right, and this account has")
    assert not signed_in(page)
    assert refresh_cookies(page) == []
    assert page.locator("#mfa-step").is_visible()


def second_step(page: Page, code: str) -> str:
    return submit(page, "mfa-authenticate-form", "Verify the code", code=code)


def test_two_step_sign_in_on_the_demo_page(demo: str) -> None:
    verified_account(demo, DANA)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(15_000)
        open_page(page, f"{demo}/")
        assert page.locator("#mfa-step").is_hidden()

        # No app yet: the password signs in in one step.
        answer = submit(page, "login-form", "Sign in", email=DANA, password=PASSWORD)
        assert "→ 200" in answer and '"access"' in answer, answer
        assert signed_in(page)
        assert mfa_status(page) == "none."
        assert '"recovery_codes_left": 0' in last_answer(page)
        shot(page, "mfa-01-signed-in-no-app")

        # A set-up needs a proof: neither the password nor a step-up, 403.
        answer = submit(page, "totp-setup-form", "Set up an authenticator app")
        assert "→ 403" in answer and "reauthentication_required" in answer, answer
        assert beside(page, "totp-setup-form").startswith("Refused (403):")
        assert "password, email_code" in beside(page, "totp-setup-form")
        assert page.locator("#totp-setup").is_hidden()
        shot(page, "mfa-02-proof-required")

        # A step-up by emailed code stands in for the password.
        answer = submit(
            page, "reauth-email-request-form", "Email me a confirmation code"
        )
        assert "→ 200" in answer and '"expires_in": 600' in answer, answer
        mail = wait_for_mail(page, DANA, "Your KinWise demo confirmation code")
        found = re.search(r"^\s+(\d{6})\s*$", mail.locator(".text").inner_text(), re.M)
        assert found, mail.inner_text()
        answer = submit(
            page, "reauth-email-form", "Confirm it's you", email_code=found[1]
        )
        assert "→ 200" in answer and '"reauthenticated_until"' in answer, answer
        assert beside(page, "reauth-email-form").startswith(
            "Done (200): Confirmed: until"
        )
        shot(page, "mfa-03-stepped-up-by-email")

        # No password now: the QR code and the key, to type in the app.
        answer = submit(page, "totp-setup-form", "Set up an authenticator app")
        assert "→ 200" in answer and '"otpauth_url"' in answer, answer
        assert page.locator("#totp-setup").is_visible()
        qr = page.locator("#totp-qr svg")
        assert qr.count() == 1 and qr.is_visible()
        assert qr.bounding_box()["width"] > 100  # type: ignore[index]
        secret = page.locator("#totp-secret").inner_text()
        assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
        assert f'"secret": "{secret}"' in answer
        assert (
            page.locator('#totp-setup-form input[name="password"]').input_value() == ""
        )
        shot(page, "mfa-04-setup-qr-code")

        # A wrong code is refused and the set-up stays open; the app's code enables it.
        app = App(secret)
        answer = submit(page, "totp-confirm-form", "Enable the app", code=WRONG)
        assert "→ 400" in answer and '"code": "invalid_code"' in answer, answer
        assert page.locator("#totp-setup").is_visible()
        answer = submit(page, "totp-confirm-form", "Enable the app", code=app.code())
        assert "→ 200" in answer, answer
        assert beside(page, "totp-confirm-form").startswith(
            "Done (200): The authenticator app is enabled."
        )
        assert page.locator("#totp-setup").is_hidden()
        assert page.locator("#totp-secret").inner_text() == ""
        first_codes = recovery_codes(page)
        assert len(first_codes) == 10 and len(set(first_codes)) == 10, first_codes
        assert all(re.fullmatch(r"\w{4}-\w{4}-\w{4}", c) for c in first_codes)
        shot(page, "mfa-05-enabled-recovery-codes")
        status = mfa_status(page)
        assert status.startswith("enabled since "), status
        assert status.endswith("10 recovery codes left."), status
        wait_for_mail(page, DANA, "Two-step sign-in changed")  # the notice

        # Signed out, the password is only the first step; then the app's code.
        log_out(page)
        first_step(page, "login-form", email=DANA, password=PASSWORD)
        assert "or one of the recovery codes" in page.locator("#mfa-step").inner_text()
        shot(page, "mfa-06-second-step")
        answer = second_step(page, WRONG)
        assert "→ 400" in answer and '"code": "invalid_code"' in answer, answer
        assert beside(page, "mfa-authenticate-form") == (
            "Refused (400): The code is not correct. invalid_code"
        )
        assert not signed_in(page)
        answer = second_step(page, app.code())
        assert "→ 200" in answer and '"access"' in answer, answer
        assert '"refresh"' not in answer, answer
        assert (
            beside(page, "mfa-authenticate-form") == f"Done (200): Signed in as {DANA}."
        )
        assert signed_in(page)
        cookies = refresh_cookies(page)
        assert {c["name"] for c in cookies} == {
            "kinwise_refresh",
            "kinwise_refresh_logout",
        }
        assert all(c["httpOnly"] for c in cookies), cookies
        answer = click(page, "Who am I (me/)")
        assert "→ 200" in answer and f'"email": "{DANA}"' in answer, answer
        shot(page, "mfa-07-signed-in-with-the-app")

        # Signed out, an emailed code then a recovery code, which is spent.
        log_out(page)
        answer = submit(page, "otp-request-form", "Email me a code", email=DANA)
        assert "→ 200" in answer, answer
        mail = wait_for_mail(page, DANA, "Your KinWise demo login code")
        found = re.search(r"^\s+(\d{6})\s*$", mail.locator(".text").inner_text(), re.M)
        assert found, mail.inner_text()
        first_step(page, "otp-verify-form", email=DANA, code=found[1])
        answer = second_step(page, first_codes[0].upper().replace("-", " "))
        assert "→ 200" in answer and '"access"' in answer, answer
        assert signed_in(page)
        shot(page, "mfa-08-signed-in-with-a-recovery-code")
        assert mfa_status(page).endswith("9 recovery codes left."), last_answer(page)

        # With the app enabled, a mailbox alone is no proof: new recovery codes
        # need the password (or the app).
        answer = submit(page, "mfa-manage-form", "New recovery codes")
        assert "→ 403" in answer and "reauthentication_required" in answer, answer
        answer = submit(
            page, "reauth-email-request-form", "Email me a confirmation code"
        )
        assert "→ 403" in answer and '"methods": [' in answer, answer
        assert '"email_code"' not in answer, answer
        shot(page, "mfa-09-no-email-step-up-with-an-app")
        answer = submit(
            page, "mfa-manage-form", "New recovery codes", password=PASSWORD
        )
        assert "→ 200" in answer, answer
        new_codes = recovery_codes(page)
        assert len(new_codes) == 10 and not set(new_codes) & set(first_codes)
        assert mfa_status(page).endswith("10 recovery codes left.")
        shot(page, "mfa-10-new-recovery-codes")

        # An old recovery code is dead; a new one signs in.
        log_out(page)
        first_step(page, "login-form", email=DANA, password=PASSWORD)
        answer = second_step(page, first_codes[1])
        assert "→ 400" in answer and '"code": "invalid_code"' in answer, answer
        answer = second_step(page, new_codes[0])
        assert "→ 200" in answer and '"access"' in answer, answer

        # Removing the app, with the password: the sign-in is one step again.
        answer = submit(page, "mfa-manage-form", "Remove the app", password=PASSWORD)
        assert "→ 204" in answer, answer
        assert beside(page, "mfa-manage-form").startswith(
            "Done (204): The authenticator app is removed"
        )
        assert mfa_status(page) == "none."
        log_out(page)
        answer = submit(page, "login-form", "Sign in", email=DANA, password=PASSWORD)
        assert "→ 200" in answer and '"access"' in answer, answer
        assert signed_in(page) and page.locator("#mfa-step").is_hidden()
        shot(page, "mfa-11-app-removed-one-step-again")
