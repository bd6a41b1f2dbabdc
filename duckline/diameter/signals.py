"""The OCS speaks first: it sends the RARs and ASRs that line changes owe open sessions
(`usage.credit_signals`, rows written by the web and worker processes), and closes the sessions
no element ends.

* Polling. Every `diameter_signal_poll_seconds` the pending signals are claimed (PostgreSQL: FOR
  UPDATE SKIP LOCKED, so several OCS processes share them) and each is sent in a task of its own,
  so a silent peer holds up only its own requests. At most `MAX_IN_FLIGHT` at once. On PostgreSQL
  a thread also LISTENs for the NOTIFY a writer sends at commit, and wakes the poll at once (the
  timer stays, for a notification lost while the listener reconnects).
* Requests (RFC 4006 §5.5, RFC 6733 §8.3 and §8.5). RAR: Session-Id, Origin-Host/-Realm,
  Destination-Realm/-Host (the element's, as its CCR-INITIAL gave them), Auth-Application-Id 4,
  Re-Auth-Request-Type AUTHORIZE_ONLY. ASR: the same without Re-Auth-Request-Type. Every AVP has
  the M bit (`codec.encode`); the P bit is set, as both commands are proxiable.
* Answers. 2001: done. 5002: the element does not know the session: closed here too. Another
  code: recorded. None after one retry (`Node.ask`): logged and noted on the session.
* Threads. Every database read and write runs on a thread of its own, never on the event loop,
  so answering CCRs and watchdogs never waits for it.
* Stale sessions. Every `diameter_session_reap_seconds`, `credit_signals.close_stale`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import psycopg
from diameter.message import constants
from diameter.message.commands import AbortSessionRequest, ReAuthRequest

from duckline.diameter.peers import SUCCESS, Node, result_code
from duckline.runtime import Runtime
from duckline.usage import credit_signals
from duckline.usage.charging_states import SignalKind, SignalOutcome
from duckline.usage.credit_signals import Claim

log = logging.getLogger("duckline.diameter.signals")

CREDIT_CONTROL = constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION  # 4
RE_AUTH, ABORT_SESSION = 258, 274
AUTHORIZE_ONLY = constants.E_RE_AUTH_REQUEST_TYPE_AUTHORIZE_ONLY  # 0
UNKNOWN_SESSION_ID = 5002
MAX_IN_FLIGHT = 200
LISTEN_CHECK_SECONDS = 0.5  # how soon the listener sees that the OCS is stopping
LISTEN_RETRY_SECONDS = 5.0
T = TypeVar("T")


def request_for(node: Node, claim: Claim) -> Any:
    """The RAR or ASR a signal asks for, from us to the element holding the session."""
    message: Any = ReAuthRequest() if claim.kind is SignalKind.RAR else AbortSessionRequest()
    header = message.header
    header.command_code = RE_AUTH if claim.kind is SignalKind.RAR else ABORT_SESSION
    header.application_id = CREDIT_CONTROL
    header.is_request, header.is_proxyable = True, True
    message.session_id = claim.session_id
    message.origin_host = node.identity.origin_host.encode()
    message.origin_realm = node.identity.realm.encode()
    message.destination_realm = claim.origin_realm.encode()
    message.destination_host = claim.origin_host.encode()
    message.auth_application_id = CREDIT_CONTROL
    if claim.kind is SignalKind.RAR:
        message.re_auth_request_type = AUTHORIZE_ONLY
    return message


class SignalSender:
    """Runs on the node's event loop between start() and stop()."""

    def __init__(self, runtime: Runtime, node: Node) -> None:
        self.runtime, self.node = runtime, node
        settings = runtime.settings
        self.poll_seconds = settings.diameter_signal_poll_seconds
        self.timeout = settings.diameter_request_timeout_seconds
        self.reap_seconds = settings.diameter_session_reap_seconds
        # Two tries, and a wait for the peer to reconnect between them, then some slack: past this
        # the OCS that claimed a signal is taken to be gone and another may send it.
        self.lease = timedelta(seconds=4 * self.timeout + 30)
        self.sending: set[asyncio.Task[None]] = set()
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="gy-signals")
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = threading.Event()
        self._listener: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._run())
        if self.runtime.db.engine.dialect.name == "postgresql":
            self._listener = threading.Thread(target=self._listen, args=(loop,), name="gy-listen", daemon=True)
            self._listener.start()

    async def stop(self) -> None:
        """Stop polling; requests in flight are dropped (their signals are sent again once their
        claim lapses)."""
        self._stopping.set()
        tasks = [t for t in (self._loop_task, *self.sending) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Python 3.11's wait_for can swallow a cancellation: the loop also checks _stopping,
            # and nothing here waits longer than a request and a database call would take.
            _, left = await asyncio.wait(tasks, timeout=2 * self.timeout + 10)
            if left:
                log.warning("credit session signals: %d task(s) still running at stop", len(left))
        if self._listener is not None:
            await asyncio.to_thread(self._listener.join, LISTEN_RETRY_SECONDS + 5)
        self._pool.shutdown(wait=True)

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """LISTEN on a connection of its own; each notification wakes the poll."""
        # The engine's own connection arguments: the URL's query (options, sslmode, ...) as
        # SQLAlchemy's dialect passes it, not re-rendered as a string libpq reads differently.
        engine = self.runtime.db.engine
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs = {"connect_timeout": 5, **kwargs, "autocommit": True}
        while not self._stopping.is_set():
            try:
                with psycopg.connect(*args, **kwargs) as connection:
                    connection.execute(f"LISTEN {credit_signals.NOTIFY_CHANNEL}")
                    loop.call_soon_threadsafe(self._wake.set)  # whatever came while not listening
                    while not self._stopping.is_set():
                        for _ in connection.notifies(timeout=LISTEN_CHECK_SECONDS, stop_after=1):
                            loop.call_soon_threadsafe(self._wake.set)
            except Exception:
                log.exception("credit session signals: LISTEN failed; polling meanwhile")
                self._stopping.wait(LISTEN_RETRY_SECONDS)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_reap = loop.time() + self.reap_seconds
        while not self._stopping.is_set():
            try:
                await self.poll()
                if loop.time() >= next_reap:
                    next_reap = loop.time() + self.reap_seconds
                    await self.reap()
            except Exception:  # the database is away: try again next time (cancelling is no Exception)
                log.exception("credit session signals: poll failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def poll(self) -> int:
        """Claim what is pending and start sending it; how many were claimed."""
        room = MAX_IN_FLIGHT - len(self.sending)
        if room <= 0:
            return 0
        claims = await self._db(lambda uow: credit_signals.claim(uow, room, self.lease))
        for claim in claims:
            task = asyncio.create_task(self._send(claim))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)
        return len(claims)

    async def reap(self) -> int:
        closed = await self._db(credit_signals.close_stale)
        if closed:
            log.info("closed %d credit-control session(s) without a request for too long", closed)
        return closed

    async def _send(self, claim: Claim) -> None:
        sent_at = self.runtime.clock.now()
        asked = await self.node.ask(claim.origin_host, request_for(self.node, claim), self.timeout)
        code = result_code(asked.answer) if asked.answer is not None else None
        if asked.sent == 0:
            outcome = SignalOutcome.NOT_CONNECTED
            log.warning("%s for %s not sent: %s is not connected", claim.kind.name, claim.session_id, claim.origin_host)
        elif code is None:
            outcome = SignalOutcome.UNANSWERED
            log.warning(
                "%s for %s: %s did not answer (sent %d times)",
                claim.kind.name,
                claim.session_id,
                claim.origin_host,
                asked.sent,
            )
        elif code == SUCCESS:
            outcome = SignalOutcome.ANSWERED
        elif code == UNKNOWN_SESSION_ID:
            outcome = SignalOutcome.UNKNOWN_SESSION
            log.info("%s for %s: unknown to %s, closed here too", claim.kind.name, claim.session_id, claim.origin_host)
        else:
            outcome = SignalOutcome.REFUSED
            log.warning("%s for %s: %s answered %s", claim.kind.name, claim.session_id, claim.origin_host, code)
        try:
            await self._finish(claim, outcome, code, asked.sent, sent_at if asked.sent else None)
        except Exception:  # its claim lapses and it is sent again
            log.exception("%s for %s: outcome not recorded", claim.kind.name, claim.session_id)

    async def _finish(
        self, claim: Claim, outcome: SignalOutcome, code: int | None, sent: int, sent_at: datetime | None
    ) -> None:
        await self._db(
            lambda uow: credit_signals.finish(
                uow,
                claim.signal_id,
                outcome,
                result_code=code,
                attempts=sent,
                sent_at=sent_at,
            )
        )

    async def _db(self, work: Callable[[Any], T]) -> T:
        """`work(uow)` in a transaction of its own, on the signals' threads."""

        def run() -> T:
            with self.runtime.unit_of_work() as uow:
                return work(uow)

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)
