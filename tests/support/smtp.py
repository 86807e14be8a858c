"""An SMTP server in this process, with its fault modes, and what it received.

:class:`SMTPServer` is an aiosmtpd handler behind a ``Controller`` on a spare
loopback port (:func:`running_smtp`). It accepts by default; a test switches its
behaviour at runtime (:meth:`SMTPServer.set`): ``refuse`` (a 4xx answer to
``RCPT`` or ``DATA``), ``slow`` (an async sleep before answering ``DATA``) or
``drop`` (the connection closed at ``RCPT`` or ``DATA``). It records every SMTP
transaction it sees, so a test can count delivery attempts, and keeps only the
messages it answered ``250`` to. Every method is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import email
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Any, Literal

from aiosmtpd.controller import Controller

from .processes import free_port
from .waiting import wait_until

__all__ = [
    "EMAIL_TIMEOUT",
    "Mode",
    "Stage",
    "ReceivedEmail",
    "SMTPEvent",
    "SMTPServer",
    "running_smtp",
]

EMAIL_TIMEOUT = 20.0  # how long a test waits for an email to reach SMTP
HANG_CAP = 60.0  # "slow" never sleeps longer; "drop" waits at most this to be cut

Mode = Literal["accept", "refuse", "slow", "drop"]
Stage = Literal["RCPT", "DATA"]


@dataclass(frozen=True)
class ReceivedEmail:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        """The text of the ``text/<subtype>`` body part; fails if there is none."""
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part in {self.subject!r}"
        assert body.get_content_type() == f"text/{subtype}"
        return str(body.get_content())


@dataclass(frozen=True)
class SMTPEvent:
    """One step of one SMTP transaction, as the server answered it."""

    at: float  # time.monotonic()
    stage: Stage
    recipients: tuple[str, ...]
    outcome: str  # "accepted", "refused 451", "dropped", "delaying", "aborted"


@dataclass(frozen=True)
class _Behaviour:
    mode: Mode = "accept"
    stage: Stage = "DATA"
    code: int = 451
    delay: float = 0.0


class SMTPServer:
    """The aiosmtpd handler and, once running (:func:`running_smtp`), its port."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._behaviour = _Behaviour()
        self._events: list[SMTPEvent] = []
        self._received: list[ReceivedEmail] = []
        self.port = 0  # the port it listens on, once running

    # --- what the test controls and reads -------------------------------------

    def set(
        self,
        mode: Mode,
        *,
        stage: Stage = "DATA",
        code: int = 451,
        delay: float = 0.0,
    ) -> None:
        """Switch the behaviour for every step answered from now on."""
        with self.lock:
            self._behaviour = _Behaviour(mode, stage, code, delay)

    def clear(self) -> None:
        """Forget every message and event; accept again."""
        with self.lock:
            self._behaviour = _Behaviour()
            self._events.clear()
            self._received.clear()

    def events(self, recipient: str | None = None) -> list[SMTPEvent]:
        with self.lock:
            items = list(self._events)
        return [e for e in items if recipient is None or recipient in e.recipients]

    def attempts(self, recipient: str) -> int:
        """SMTP transactions that got as far as naming ``recipient`` (RCPT)."""
        return sum(1 for e in self.events(recipient) if e.stage == "RCPT")

    def messages(self, recipient: str | None = None) -> list[ReceivedEmail]:
        """Messages the server answered 250 to (delivered), in order."""
        with self.lock:
            items = list(self._received)
        return [m for m in items if recipient is None or recipient in m.rcpt_tos]

    def describe(self) -> str:
        """What the server saw, for a failure message: its messages and events."""
        events = self.events()
        t0 = events[0].at if events else 0.0
        lines = [
            f"  +{e.at - t0:6.2f}s {e.stage} {','.join(e.recipients)}: {e.outcome}"
            for e in events
        ]
        received = [(m.rcpt_tos, m.subject) for m in self.messages()]
        return f"the SMTP server received {received}\nSMTP events:\n" + (
            "\n".join(lines) or "  (none)"
        )

    def wait_for(
        self,
        recipient: str,
        subject: str,
        *,
        timeout: float = EMAIL_TIMEOUT,
        check: Callable[[], None] | None = None,
        details: Callable[[], str] | None = None,
    ) -> ReceivedEmail:
        """The first message to ``recipient`` with ``subject``, within ``timeout``.

        ``check`` runs on every poll (e.g. to fail fast when the worker died);
        ``details`` adds to the failure message.
        """

        def found() -> ReceivedEmail | None:
            for item in self.messages(recipient):
                if item.subject == subject:
                    return item
            return None

        def explain() -> str:
            extra = f"\n{details()}" if details is not None else ""
            return self.describe() + extra

        return wait_until(
            found,
            timeout=timeout,
            what=f"an email {subject!r} to {recipient}",
            check=check,
            details=explain,
        )

    # --- the aiosmtpd handler ---------------------------------------------------

    def _record(self, stage: Stage, recipients: Any, outcome: str) -> None:
        event = SMTPEvent(time.monotonic(), stage, tuple(recipients), outcome)
        with self.lock:
            self._events.append(event)

    def _now(self) -> _Behaviour:
        with self.lock:
            return self._behaviour

    async def _drop(self, server: Any, stage: Stage, recipients: Any) -> str:
        self._record(stage, recipients, "dropped")
        server.transport.close()
        # connection_lost() cancels this coroutine: no answer is ever sent.
        await asyncio.sleep(HANG_CAP)
        return "421 4.4.2 connection dropped"

    async def handle_RCPT(  # noqa: N802
        self,
        server: Any,
        session: Any,
        envelope: Any,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        now = self._now()
        if now.stage == "RCPT" and now.mode == "refuse":
            self._record("RCPT", [address], f"refused {now.code}")
            return f"{now.code} 4.3.0 Injected fault: try again later"
        if now.stage == "RCPT" and now.mode == "drop":
            return await self._drop(server, "RCPT", [address])
        envelope.rcpt_tos.append(address)
        self._record("RCPT", [address], "accepted")
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        now = self._now()
        recipients = list(envelope.rcpt_tos)
        if now.stage == "DATA" and now.mode == "refuse":
            self._record("DATA", recipients, f"refused {now.code}")
            return f"{now.code} 4.3.0 Injected fault: try again later"
        if now.stage == "DATA" and now.mode == "drop":
            return await self._drop(server, "DATA", recipients)
        if now.mode == "slow":
            self._record("DATA", recipients, "delaying")
            try:
                await asyncio.sleep(min(now.delay, HANG_CAP))
            except asyncio.CancelledError:
                # The client went away before the answer: nothing is delivered.
                self._record("DATA", recipients, "aborted")
                raise
            transport = server.transport
            if transport is None or transport.is_closing():
                self._record("DATA", recipients, "aborted")
                return "451 4.4.2 client gone"
        raw = bytes(envelope.content)
        message = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        item = ReceivedEmail(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(recipients),
            raw=raw,
            message=message,
        )
        with self.lock:
            self._received.append(item)
        self._record("DATA", recipients, "accepted")
        return "250 Message accepted for delivery"


@contextmanager
def running_smtp() -> Iterator[SMTPServer]:
    """An :class:`SMTPServer` on a spare loopback port, stopped on exit."""
    server = SMTPServer()
    last_error: OSError | None = None
    for _ in range(3):  # the spare port may be taken between probe and bind
        controller = Controller(
            server, hostname="127.0.0.1", port=free_port(), ready_timeout=5.0
        )
        try:
            controller.start()
        except OSError as exc:
            last_error = exc
            continue
        server.port = int(controller.port)
        try:
            yield server
        finally:
            controller.stop()
            server.port = 0
        return
    raise RuntimeError(f"no spare port for the SMTP server: {last_error}")
