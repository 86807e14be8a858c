"""Passkeys on the demo page, in headless Chromium with its virtual authenticator.

The demo launcher as in test_demo_mfa (SQLite, embedded broker and cache, the dev
mailbox), the page opened at ``http://localhost:<port>/``: the launcher makes
``localhost`` the relying party (a passkey cannot belong to 127.0.0.1). Chromium's
DevTools protocol gives the page a platform authenticator with resident keys and
user verification (``WebAuthn.addVirtualAuthenticator``); ``navigator.credentials``
then answers as a phone or a laptop would, with no prompt. A verified account:

* signs in with the password (one step), is refused a passkey without a proof,
  adds one with the password: the first second factor brings recovery codes, and
  the authenticator now holds one discoverable credential;
* signs out, and in with the passkey alone: no address typed, no second step
  (the refresh token in HttpOnly cookies); the credential's count went up;
* signs out, and in with the password: now the first step of two, finished by
  the passkey ("Use a passkey instead");
* steps up with the passkey (user verified) and removes nothing by mistake.

Screenshots go to ``artifacts/screenshots/passkey-*.png``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.chromium import chromium, shot
from tests.browser.test_demo_mfa import demo, first_step, log_out, signed_in
from tests.browser.test_demo_page import (
    beside,
    click,
    open_page,
    refresh_cookies,
    submit,
)
from tests.browser.test_spa import PASSWORD, verified_account

if TYPE_CHECKING:
    from playwright.sync_api import CDPSession

pytestmark = pytest.mark.browser

__all__ = ["demo"]  # the launcher fixture, shared with test_demo_mfa

ERIN = "passkey-erin@example.com"


def virtual_authenticator(session: CDPSession) -> str:
    """A platform authenticator with resident keys that verifies its user."""
    session.send("WebAuthn.enable")
    added = session.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return str(added["authenticatorId"])


def credentials(session: CDPSession, authenticator: str) -> list[dict[str, Any]]:
    found = session.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    return list(found["credentials"])


def test_passkeys_on_the_demo_page(demo: str) -> None:
    verified_account(demo, ERIN)
    page_url = demo.replace("127.0.0.1", "localhost") + "/"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(15_000)
        devtools = page.context.new_cdp_session(page)
        authenticator = virtual_authenticator(devtools)
        open_page(page, page_url)
        assert "opened under the name" not in page.locator("#passkeys").inner_text()

        answer = submit(page, "login-form", "Sign in", email=ERIN, password=PASSWORD)
        assert "→ 200" in answer and '"access"' in answer, answer

        # Adding a passkey needs a proof; with the password, the device makes one.
        answer = submit(page, "passkey-add-form", "Add a passkey", name="Virtual key")
        assert "→ 403" in answer and "reauthentication_required" in answer, answer
        assert credentials(devtools, authenticator) == []
        answer = submit(
            page,
            "passkey-add-form",
            "Add a passkey",
            name="Virtual key",
            password=PASSWORD,
        )
        page.wait_for_function(
            "document.querySelector('#passkey-add-form-answer')"
            "?.textContent.startsWith('Done (201)')"
        )
        assert beside(page, "passkey-add-form").startswith(
            'Done (201): Passkey "Virtual key" added'
        )
        held = credentials(devtools, authenticator)
        assert len(held) == 1 and held[0]["isResidentCredential"], held
        assert held[0]["rpId"] == "localhost"
        assert len(page.locator("#recovery-code-list li").all_inner_texts()) == 10
        assert (
            page.locator("#passkey-list li")
            .all_inner_texts()[0]
            .startswith("Virtual key: added")
        )
        shot(page, "passkey-01-added")

        # Signed out, the passkey alone signs in: no address, no second step.
        log_out(page)
        page.locator("#passkey-login-form").get_by_role(
            "button", name="Sign in with a passkey"
        ).click()
        page.wait_for_function(
            "document.querySelector('#passkey-login-form-answer')"
            "?.textContent.startsWith('Done (200)')"
        )
        assert beside(page, "passkey-login-form") == f"Done (200): Signed in as {ERIN}."
        assert signed_in(page) and page.locator("#mfa-step").is_hidden()
        assert {c["name"] for c in refresh_cookies(page)} == {
            "kinwise_refresh",
            "kinwise_refresh_logout",
        }
        answer = click(page, "Who am I (me/)")
        assert "→ 200" in answer and f'"email": "{ERIN}"' in answer, answer
        assert credentials(devtools, authenticator)[0]["signCount"] >= 1
        shot(page, "passkey-02-signed-in-with-the-passkey")

        # The password is now the first of two steps; the passkey finishes it.
        log_out(page)
        first_step(page, "login-form", email=ERIN, password=PASSWORD)
        assert page.locator("#mfa-passkey-form").is_visible()
        shot(page, "passkey-03-second-step")
        page.locator("#mfa-passkey-form").get_by_role(
            "button", name="Use a passkey instead"
        ).click()
        page.wait_for_function(
            "document.querySelector('#mfa-passkey-form-answer')"
            "?.textContent.startsWith('Done (200)')"
        )
        assert signed_in(page)
        shot(page, "passkey-04-second-step-by-passkey")

        # A step-up with the passkey.
        page.locator("#reauth-passkey-form").get_by_role(
            "button", name="Confirm it's you with a passkey (step-up)"
        ).click()
        page.wait_for_function(
            "document.querySelector('#reauth-passkey-form-answer')"
            "?.textContent.startsWith('Done (200)')"
        )
        assert beside(page, "reauth-passkey-form").startswith(
            "Done (200): Confirmed: until"
        )
        shot(page, "passkey-05-stepped-up")
