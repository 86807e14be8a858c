"""Security rules 4 and 9 under concurrency, as attacks over real HTTP on PostgreSQL.

The races are run the way ``test_races.py`` runs them: client threads connect to
pytest-django's threaded live server, wait at a :class:`threading.Barrier` and
send their one request each at the same moment; every request thread of the
server opens its own PostgreSQL connection, so the requests really contend.

* ``test_parallel_wrong_passwords_meet_the_per_email_budget`` (rules 4 and 9): forty
  wrong passwords for one verified account, sent at once from forty client IPs
  (``TRUSTED_PROXY_COUNT = 1`` and a distinct ``X-Forwarded-For`` each, so no
  per-IP budget is touched), meet ``login/``'s per-email budget of failures at its
  default, "5/10m": exactly five are evaluated (400 ``invalid_credentials``, one
  ``login_failed`` audit event each), every other one is 429 ``rate_limited`` with
  ``Retry-After``, none is a 5xx. A budget that is checked first and counted
  afterwards lets every one of them through.
* ``test_refresh_racing_an_owner_action_never_deadlocks`` (rule 9; rule 6's "no
  refresh" for the deletion): with rotation and blacklisting on, refresh-token
  holders refresh at the moment the owner changes the password, confirms a
  password reset or deletes the account. In every round no answer is a 5xx (the
  refresh locks its outstanding-token row and then blacklists it; the owner's
  request blacklists every outstanding token of the user, and the deferred foreign
  keys of ``token_blacklist`` are checked at commit: locked in opposite orders,
  PostgreSQL answers "deadlock detected"), and once the owner's request has
  succeeded no refresh token minted before it can be refreshed: neither those
  the holders had, nor one a racing refresh handed out in exchange. A round is
  a fresh user with five sessions: four holders refresh theirs, the owner's
  request comes from the fifth; a hundred rounds per action, but a run stops
  after ten failed rounds (a deadlock costs a second of ``deadlock_timeout``).

Rate limits are off for the second test (``RATELIMIT_ENABLE = False``, as in
``test_races.py``): a hundred rounds for one IP would spend every budget. They are
on for the first, which is about them. As in ``test_races.py`` the outbox rows
the requests write go to a private ``redis-server`` of this module's own, which
no worker consumes, and the secrets are minted in the test.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework_simplejwt.tokens import RefreshToken

from kinwise_auth.conf import DEFAULTS, auth_settings
from kinwise_auth.models import AuthEvent, LinkToken
from kinwise_auth.services.secrets import mint_link
from tests.conftest import session_tokens
from tests.support.accounts import PASSWORD, new_address
from tests.support.brokers import publisher_broker
from tests.support.http import Answer, post_json
from tests.support.racing import Call, race

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# --- test 1: the login/ budget ------------------------------------------------

LOGIN_CLIENTS = 40
LOGIN_ROUNDS = range(5)
LOGIN_EMAIL_RATE = "5/10m"  # the default per-email budget of login/ failures
LOGIN_BUDGET = 5
WRONG_PASSWORD = "not-the-Right-one-42"
# 198.18.0.0/15 (RFC 2544, benchmarking): a block of client addresses per round.
CLIENT_IPS = ipaddress.IPv4Network("198.18.0.0/15")
LISTEN_BACKLOG = 2 * LOGIN_CLIENTS  # see the ``api`` fixture

# --- test 2: refresh against the owner's change, reset and deletion ------------

OWNER_ROUNDS = 100
# A broken build deadlocks in most rounds and each deadlock costs PostgreSQL's
# deadlock_timeout (1 s): stop a run once this many rounds failed, the verdict is in.
STOP_AFTER_FAILED_ROUNDS = 10
REFRESHERS = 4  # refresh-token holders racing the owner's one request per round
OWNER_ACTIONS = ("password_change", "password_reset", "account_delete")


# --- answers -------------------------------------------------------------------


def describe(answer: Answer) -> tuple[int, str]:
    """``(status, code)``, or ``(status, title or start of the body)``."""
    if answer.code:
        return answer.status, str(answer.code)
    text = str(answer.body)
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    return answer.status, " ".join((title.group(1) if title else text).split())[:80]


def tally(replies: Sequence[Answer]) -> Counter[tuple[int, str]]:
    return Counter(describe(reply) for reply in replies)


class ServerErrors(logging.Handler):
    """What ``django.request`` logs as errors (a 500's exception), from any thread.

    A 500 page says nothing (``DEBUG = False``); this keeps the exception's type
    and first line, e.g. ``OperationalError: deadlock detected``.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []
        self.example = ""  # the first exception in full (PostgreSQL's DETAIL...)

    def emit(self, record: logging.LogRecord) -> None:  # called under self.lock
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            self.seen.append(record.getMessage())
            return
        text = f"{type(exc).__module__}.{type(exc).__name__}: {str(exc).strip()}"
        self.example = self.example or " | ".join(text.splitlines())[:600]
        first = (str(exc).strip().splitlines() or [""])[0]
        self.seen.append(f"{type(exc).__name__}: {first}")

    def take(self) -> list[str]:
        with self.lock:
            seen, self.seen = self.seen, []
        return seen


# --- fixtures -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def _hardening_setup(transactional_db: None, unconsumed_broker: str) -> Iterator[None]:
    """PostgreSQL (``transactional_db`` first: it passes the gate or skips)."""
    assert connection.vendor == "postgresql", connection.vendor
    with publisher_broker(unconsumed_broker):
        yield


@pytest.fixture
def api(api: str, live_server: Any) -> str:
    """The API's root on the live server, whose listen backlog is widened first.

    Django's ``WSGIServer`` listens with a backlog of 10. Forty clients that
    connect at once overflow it: the kernel drops SYNs (the client retries a
    second later) or answers them with SYN cookies, and a connection whose
    handshake the full queue then drops is reset when the client sends its
    request after the barrier. Calling ``listen()`` again on the listening socket
    sets a new backlog (Linux); a wider one only helps later tests.
    """
    live_server.thread.httpd.socket.listen(LISTEN_BACKLOG)
    return api


@pytest.fixture
def server_errors() -> Iterator[ServerErrors]:
    handler = ServerErrors()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# --- test 1 -------------------------------------------------------------------


@pytest.mark.parametrize("round_", LOGIN_ROUNDS)
def test_parallel_wrong_passwords_meet_the_per_email_budget(
    round_: int,
    api: str,
    make_user: Callable[..., Any],
    settings: Any,
    server_errors: ServerErrors,
) -> None:
    settings.RATELIMIT_ENABLE = True
    settings.KINWISE_AUTH = {**settings.KINWISE_AUTH, "TRUSTED_PROXY_COUNT": 1}
    # The per-email budget is the default one; the per-IP budget ("10/m") is
    # never reached: each client IP sends one request.
    assert DEFAULTS["RATE_LIMITS"]["login"]["email"] == LOGIN_EMAIL_RATE
    assert auth_settings.rate("login", "email") == LOGIN_EMAIL_RATE
    assert auth_settings.TRUSTED_PROXY_COUNT == 1
    address = new_address(f"budget-{round_}")
    user = make_user(address)
    first = CLIENT_IPS.network_address + round_ * 256
    ips = [str(first + i + 1) for i in range(LOGIN_CLIENTS)]

    replies = race(
        [
            Call(
                f"{api}/login/",
                {"email": address, "password": WRONG_PASSWORD},
                {"X-Forwarded-For": ip},
            )
            for ip in ips
        ],
        name="hardening-client",
    )

    counts = tally(replies)
    evaluated = [
        r for r in replies if r.status == 400 and r.code == "invalid_credentials"
    ]
    refused = [r for r in replies if r.status == 429 and r.code == "rate_limited"]
    failed_events = AuthEvent.objects.filter(user=user, event_type="login_failed")
    audited = failed_events.count()
    figures = (
        f"{len(evaluated)} of {LOGIN_CLIENTS} simultaneous wrong passwords were "
        f"evaluated and {audited} login_failed events recorded (budget "
        f"{LOGIN_BUDGET}); answers: {dict(counts)}"
    )
    assert not [r for r in replies if r.status >= 500], (
        f"{figures}; server errors: {server_errors.take()}"
    )
    assert len(evaluated) + len(refused) == LOGIN_CLIENTS, figures
    # Counted up front in one atomic step: exactly the budget is evaluated.
    assert len(evaluated) == LOGIN_BUDGET, figures
    assert audited == len(evaluated), figures
    assert all(int(r.headers.get("Retry-After") or 0) >= 1 for r in refused), figures
    # The requests were told apart by the forwarded address, not REMOTE_ADDR.
    recorded = set(failed_events.values_list("ip", flat=True))
    assert recorded <= set(ips), recorded


# --- test 2 -------------------------------------------------------------------


@dataclass
class Round:
    """One round's problems: each a sentence saying what went wrong."""

    number: int
    problems: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)


def owner_call(action: str, api: str, user: Any, session: RefreshToken, n: int) -> Call:
    """The owner's request: change the password, confirm a reset, or delete."""
    new_password = f"fresh-Staple-lantern-{n}"
    bearer = {"Authorization": f"Bearer {session.access_token}"}
    if action == "password_change":
        return Call(
            f"{api}/password/change/",
            {
                "current_password": PASSWORD,
                "new_password": new_password,
                "new_password_confirm": new_password,
            },
            bearer,
        )
    if action == "password_reset":
        token = mint_link(user=user, purpose=LinkToken.Purpose.PASSWORD_RESET)
        return Call(
            f"{api}/password/reset/confirm/",
            {
                "token": token,
                "new_password": new_password,
                "new_password_confirm": new_password,
            },
        )
    assert action == "account_delete", action
    return Call(f"{api}/account/delete/", {"password": PASSWORD}, bearer)


OWNER_SUCCESS = {"password_change": 200, "password_reset": 200, "account_delete": 204}


def run_round(
    action: str,
    n: int,
    api: str,
    make_user: Callable[..., Any],
    server_errors: ServerErrors,
) -> Round:
    result = Round(n)
    user = make_user(new_address(f"{action.replace('_', '-')}-{n}"))
    # One session of the owner's, one of each holder's: all outstanding.
    owner_session, *held = (
        RefreshToken(session_tokens(user)["refresh"]) for _ in range(REFRESHERS + 1)
    )
    refresh_url = f"{api}/token/refresh/"
    calls = [Call(refresh_url, {"refresh": str(token)}) for token in held]
    calls.insert(REFRESHERS // 2, owner_call(action, api, user, owner_session, n))

    replies = race(calls, name="hardening-client")

    owner = replies.pop(REFRESHERS // 2)
    result.server_errors = server_errors.take()
    for who, reply in [("owner", owner), *(("refresh", r) for r in replies)]:
        if reply.status >= 500:
            result.problems.append(f"{who} answered {describe(reply)}")
    expected = {(200, None), (401, "token_not_valid")}
    for reply in replies:
        if reply.status < 500 and (reply.status, reply.code) not in expected:
            result.problems.append(f"refresh answered {describe(reply)}")
    if owner.status != OWNER_SUCCESS[action]:
        if owner.status < 500:
            result.problems.append(f"owner answered {describe(owner)}")
        return result

    # The owner's request succeeded: no refresh token minted before it still works.
    before = [("minted before", str(token)) for token in [owner_session, *held]]
    rotated = [
        ("handed out by a racing refresh", r.body["refresh"])
        for r in replies
        if r.status == 200 and isinstance(r.body, dict) and "refresh" in r.body
    ]
    for kind, token in [*before, *rotated]:
        after = post_json(refresh_url, {"refresh": token})
        if after.status != 401:
            result.problems.append(
                f"a refresh token {kind} still refreshes after the {action}: "
                f"{after.status}"
            )
    if action == "account_delete":
        still = get_user_model()._default_manager.filter(pk=user.pk).exists()
        if still:
            result.problems.append("the account still exists after its deletion")
    return result


@pytest.mark.parametrize("action", OWNER_ACTIONS)
def test_refresh_racing_an_owner_action_never_deadlocks(
    action: str,
    api: str,
    make_user: Callable[..., Any],
    settings: Any,
    server_errors: ServerErrors,
) -> None:
    settings.RATELIMIT_ENABLE = False  # see the module docstring
    # simplejwt rebinds its api_settings on setting_changed; the package reads late.
    settings.SIMPLE_JWT = {
        "ROTATE_REFRESH_TOKENS": True,
        "BLACKLIST_AFTER_ROTATION": True,
    }

    rounds: list[Round] = []
    failed: list[Round] = []
    for n in range(OWNER_ROUNDS):
        rounds.append(run_round(action, n, api, make_user, server_errors))
        if rounds[-1].problems:
            failed.append(rounds[-1])
            if len(failed) >= STOP_AFTER_FAILED_ROUNDS:
                break

    errors = Counter(text for r in rounds for text in r.server_errors)
    problems = Counter(problem for r in failed for problem in r.problems)
    assert not failed, (
        f"{action}: {len(failed)} of the {len(rounds)} rounds run failed (a run "
        f"of {OWNER_ROUNDS} stops after {STOP_AFTER_FAILED_ROUNDS} failed rounds; "
        f"failed: {[r.number for r in failed]}); problems: {dict(problems)}; "
        f"server errors: {dict(errors)}; the first in full: {server_errors.example}"
    )
