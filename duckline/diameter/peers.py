"""The Diameter peer layer (RFC 6733 §5, RFC 3539 watchdogs) on asyncio: one event loop owns every
connection, so nothing one peer does (drop mid-request, send garbage, go silent) holds up another.

* Connections. Network elements dial us (we are the responder: R-Open only, we dial no one). A
  connection's first message must be a CER within Tw, from an Origin-Host in the allowed list
  (3010 otherwise), advertising credit control or relay (5010), without asking for TLS only
  (5017); a refused CER gets its CEA and the connection is closed. One Origin-Host may hold
  several connections (RFC 6733 §2.1: several instances of a peer): each is its own state machine
  with its own watchdog, and an answer always goes out on the connection its request came in on.
* Framing. Each message is read by the length in its header, checked (version 1, 20 bytes to
  1 MiB, a multiple of 4, AVPs that tile it): anything else is garbage, after which the stream
  cannot be trusted, so that connection alone is closed.
* Watchdog (RFC 3539). Tw after the last message received we send a DWR; Tw more without any
  message makes the connection SUSPECT; Tw more, DOWN: it is closed. Any message received makes
  it OKAY again. We answer the peer's DWRs and DPRs (DPA, then close).
* Requests. Each application request runs in its own task; what it waits for (the database, on
  the application's thread pool) never blocks the loop. If its connection is gone by the time the
  answer is ready, the answer is dropped, counted and logged; the work it did stays done.
* Peers. Each allowed Origin-Host is a `Peer` with a state (connected: some connection OKAY;
  suspect: some connection SUSPECT and none OKAY; down) and counters, read with `status()`.
* Requests of ours (`Node.ask`: RAR, ASR to the element holding a session). Sent to a peer by
  its Origin-Host, on one of its connections (OKAY ones first), with our own Hop-by-Hop and
  End-to-End ids; the answer is matched by Hop-by-Hop id on that connection (an answer never
  reaches the applications). No answer in time: sent once more (T flag, same End-to-End id) on
  another connection of the peer, else on the same one, or on the one it makes after reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from diameter.message import Avp, Message, MessageHeader, constants
from diameter.message.commands import (
    CapabilitiesExchangeAnswer,
    DeviceWatchdogAnswer,
    DeviceWatchdogRequest,
    DisconnectPeerAnswer,
    DisconnectPeerRequest,
)

from duckline.diameter import codec

log = logging.getLogger("duckline.diameter.peers")

CER, DWR, DPR = 257, 280, 282
BASE_COMMANDS = frozenset({CER, DWR, DPR})
RELAY = 0xFFFFFFFF
CREDIT_CONTROL = constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION  # 4
TGPP = constants.VENDOR_TGPP  # 10415

SUCCESS = 2001
COMMAND_UNSUPPORTED = 3001
UNABLE_TO_DELIVER = 3002
REALM_NOT_SERVED = 3003
TOO_BUSY = 3004
APPLICATION_UNSUPPORTED = 3007
UNKNOWN_PEER = 3010
AVP_UNSUPPORTED = 5001
INVALID_AVP_VALUE = 5004
MISSING_AVP = 5005
UNABLE_TO_COMPLY = 5012
NO_COMMON_APPLICATION = 5010
NO_COMMON_SECURITY = 5017
DISCONNECT_REBOOTING = 0

# Past this much unsent data a peer is not reading what we send: close rather than buffer more.
MAX_WRITE_BUFFER = 4 << 20


class PeerState(StrEnum):
    CONNECTED = "connected"
    SUSPECT = "suspect"
    DOWN = "down"


class Watchdog(StrEnum):
    """A connection's RFC 3539 state (DOWN is a closed connection)."""

    OKAY = "okay"
    SUSPECT = "suspect"


@dataclass(frozen=True)
class Identity:
    """Who we are in CEA, DWR/DWA, DPR and every answer."""

    origin_host: str
    realm: str
    vendor_id: int
    product_name: str
    # Changes at every start (RFC 6733 §8.16): peers learn that our state may have been lost.
    origin_state_id: int = field(default_factory=lambda: int(time.time()) & 0xFFFFFFFF)
    supported_vendor_ids: tuple[int, ...] = (TGPP,)


class Application(Protocol):
    """A Diameter application the node routes requests to."""

    application_id: int
    commands: frozenset[int]
    required: tuple[int, ...]  # AVP codes (vendor 0) every request must carry, else 5005

    async def answer(self, request: codec.Inbound, connection: Connection) -> Any:
        """The answer to a request that passed the node's checks."""

    def echo(self, request: codec.Inbound) -> list[Any]:
        """AVPs copied from the request into every answer to it, error answers included."""


@dataclass
class PeerCounters:
    requests: int = 0  # application requests received
    answers: Counter[int] = field(default_factory=Counter)  # answers to them sent, by Result-Code
    errors: int = 0  # garbage, protocol violations, requests that raised
    dropped: int = 0  # answers whose connection was gone when they were ready
    connections: int = 0  # CERs accepted
    refused: int = 0  # CERs from this host refused (no common application, missing AVP, …)
    suspects: int = 0  # times a connection went unanswered for a DWR (RFC 3539 SUSPECT)


@dataclass(frozen=True)
class PeerStatus:
    """One peer as `Peers.status()` shows it."""

    host: str
    state: PeerState
    since: datetime
    connections: int
    requests: int
    answers: dict[int, int]
    errors: int
    dropped: int
    accepted: int = 0  # CERs accepted (connections opened)
    refused: int = 0
    suspects: int = 0
    last_event: str = ""  # what last happened to it, as its log line says it
    last_event_at: datetime | None = None


@dataclass(frozen=True)
class Asked:
    """What came of a request of ours: the answer (None: none came), and how many times it was sent
    (0: the peer had no connection to send it on)."""

    answer: Any | None
    sent: int


class Peer:
    """An allowed network element (one Origin-Host), with its open connections and counters."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.connections: list[Connection] = []
        self.counters = PeerCounters()
        self.state = PeerState.DOWN
        self.since = datetime.now(UTC)
        self.last_event = ""
        self.last_event_at: datetime | None = None
        # Told of every event (on the loop: must only note it, e.g. the status publisher).
        self.listeners: list[Callable[[Peer], None]] = []

    def refresh(self, reason: str) -> None:
        """An event on one of its connections: recompute the state from the connections; the
        event's one log line (with the state it leaves the peer in); tell the listeners."""
        states = {c.watchdog for c in self.connections}
        state = (
            PeerState.CONNECTED
            if Watchdog.OKAY in states
            else PeerState.SUSPECT
            if Watchdog.SUSPECT in states
            else PeerState.DOWN
        )
        if state is not self.state:
            self.state, self.since = state, datetime.now(UTC)
        level = logging.INFO if state is PeerState.CONNECTED else logging.WARNING
        log.log(level, "peer %s %s: %s (%d connection(s))", self.host, state.value, reason, len(self.connections))
        self.noted(reason)

    def noted(self, event: str) -> None:
        self.last_event, self.last_event_at = event[:200], datetime.now(UTC)
        for listener in self.listeners:
            listener(self)

    def status(self) -> PeerStatus:
        c = self.counters
        return PeerStatus(
            self.host,
            self.state,
            self.since,
            len(self.connections),
            c.requests,
            dict(c.answers),
            c.errors,
            c.dropped,
            accepted=c.connections,
            refused=c.refused,
            suspects=c.suspects,
            last_event=self.last_event,
            last_event_at=self.last_event_at,
        )


class Peers:
    """The allowed peers, from Diameter URIs (`aaa://host[:port][;transport=tcp]`), by host,
    case-insensitively; plus what connections that never became a peer's did."""

    def __init__(self, uris: Iterable[str]) -> None:
        self.by_host = {host: Peer(host) for host in map(uri_host, uris)}
        self.refused = 0  # CERs refused (unknown host, no common application, …)
        self.garbage = 0  # connections closed before a CER was accepted, on bad bytes

    def get(self, host: str) -> Peer | None:
        return self.by_host.get(host.lower())

    def status(self) -> list[PeerStatus]:
        return [peer.status() for peer in self.by_host.values()]

    def listen(self, listener: Callable[[Peer], None]) -> None:
        """Call `listener(peer)` on the loop after each event of any peer."""
        for peer in self.by_host.values():
            peer.listeners.append(listener)


def uri_host(uri: str) -> str:
    """The FQDN of a Diameter URI (RFC 6733 §4.3.1), lower-cased; a bare host is taken as is."""
    return uri.strip().lower().split("://", 1)[-1].split(";", 1)[0].split(":", 1)[0]


def result_code(message: Any) -> int:
    code = getattr(message, "result_code", None)
    if code is None:
        code = next((a.value for a in message.avps if a.code == constants.AVP_RESULT_CODE and a.vendor_id == 0), 0)
    return int(code)


def _text(avp: Any) -> str:
    value = avp.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Node:
    """Listens, runs each connection, routes application requests. Runs on one event loop."""

    def __init__(
        self, identity: Identity, peers: Peers, applications: Iterable[Application], watchdog_seconds: float = 30.0
    ) -> None:
        self.identity = identity
        self.peers = peers
        self.applications = {app.application_id: app for app in applications}
        self.watchdog_seconds = watchdog_seconds
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        # End-to-End ids of what we originate: high 12 bits from the clock (RFC 6733 §3).
        self._end_to_end = itertools.count((int(time.time()) & 0xFFF) << 20)

    async def start(self, host: str, port: int, listening: socket.socket | None = None) -> int:
        """Bind (raises OSError, e.g. the port is in use) and accept, or accept on a socket already
        listening; returns the port."""
        if listening is not None:
            self._server = await asyncio.start_server(self._accept, sock=listening)
        else:
            self._server = await asyncio.start_server(self._accept, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, timeout: float) -> None:
        """Stop accepting, send DPR on every open connection, wait up to `timeout` s for DPAs (or
        the peers closing), close whatever is left, and let requests in flight finish."""
        if self._server is not None:
            self._server.close()
        deadline = asyncio.get_running_loop().time() + timeout
        # Taken now: a connection leaves the set when it closes, its requests may still be running.
        tasks = {t for c in self.connections for t in c.tasks}
        for connection in list(self.connections):
            if connection.peer is not None:
                connection.disconnect()
            else:
                connection.close("shutting down")
        waits = [asyncio.ensure_future(c.done.wait()) for c in self.connections]
        if waits:
            await asyncio.wait(waits, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
            for wait in waits:
                wait.cancel()
        for connection in list(self.connections):
            connection.close("shutting down")
        tasks |= {t for c in self.connections for t in c.tasks}
        if tasks:
            await asyncio.wait(tasks, timeout=max(1.0, deadline - asyncio.get_running_loop().time()))

    def status(self) -> list[PeerStatus]:
        return self.peers.status()

    def next_end_to_end(self) -> int:
        return next(self._end_to_end) & 0xFFFFFFFF

    async def ask(self, host: str, message: Any, timeout: float) -> Asked:
        """Send a request of ours to the peer `host` and wait up to `timeout` s for its answer; with
        none, send it once more: on another connection of the peer if it has one, else on the same
        one if it is still open, else on the next one it opens within `timeout`."""
        peer = self.peers.get(host)
        if peer is None:
            return Asked(None, 0)
        end_to_end = self.next_end_to_end()
        tried: list[Connection] = []
        for attempt in range(2):
            connection = await self._connection_of(peer, tried, timeout if attempt else 0.0)
            if connection is None:
                break
            message.header.is_retransmit = attempt > 0
            answer = await connection.request(message, timeout, end_to_end)
            tried.append(connection)
            if answer is not None:
                return Asked(answer, len(tried))
            log.warning("%s: no answer to our %s (attempt %d)", connection, message.header.command_code, attempt + 1)
        return Asked(None, len(tried))

    async def _connection_of(self, peer: Peer, tried: list[Connection], wait: float) -> Connection | None:
        """An open connection of the peer: one not tried yet (OKAY before SUSPECT), else one tried
        that is still open; waiting up to `wait` s for the peer to connect when it has none."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            open_ = [c for c in peer.connections if not c.closed]
            fresh = sorted((c for c in open_ if c not in tried), key=lambda c: c.watchdog is not Watchdog.OKAY)
            if fresh or open_:
                return (fresh or open_)[0]
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(0.05)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)

    async def route(self, request: codec.Inbound, connection: Connection) -> Any:
        """The answer to an application request: the node's checks, then the application's."""
        header = request.header
        app = self.applications.get(header.application_id)
        if app is None:
            return self.error_answer(request, APPLICATION_UNSUPPORTED, f"application {header.application_id}")
        if header.command_code not in app.commands:
            return self.error_answer(request, COMMAND_UNSUPPORTED, f"command {header.command_code}", app)
        for code in (constants.AVP_ORIGIN_HOST, constants.AVP_ORIGIN_REALM, constants.AVP_DESTINATION_REALM):
            if request.first(code) is None:
                return self.error_answer(request, MISSING_AVP, "missing AVP", app, codec.missing(code))
        realm = request.first(constants.AVP_DESTINATION_REALM)
        if _text(realm).lower() != self.identity.realm.lower():
            return self.error_answer(request, REALM_NOT_SERVED, f"realm {_text(realm)} is not served", app)
        host = request.first(constants.AVP_DESTINATION_HOST)
        if host is not None and _text(host).lower() != self.identity.origin_host.lower():
            return self.error_answer(request, UNABLE_TO_DELIVER, f"host {_text(host)} is not this server", app)
        unknown = request.unknown_mandatory()
        if unknown is not None:
            return self.error_answer(request, AVP_UNSUPPORTED, f"AVP {unknown.code} is not supported", app, unknown)
        for code in app.required:
            if request.first(code) is None:
                return self.error_answer(request, MISSING_AVP, "missing AVP", app, codec.missing(code))
        return await app.answer(request, connection)

    def error_answer(
        self, request: codec.Inbound, code: int, text: str, app: Application | None = None, *failed: Any
    ) -> Message:
        """An answer to a request that was not served (RFC 6733 §7.2): Session-Id, Result-Code,
        Origin-Host/-Realm, what the application echoes (e.g. CC-Request-Type and -Number, which
        credit-control clients match answers by), Error-Message and Failed-AVP. A protocol error
        (3xxx) has the E bit: it is §7.2's answer-message, and `codec` sends the echoes in it
        without the M bit (see `codec.ANSWER_MESSAGE`)."""
        asked = request.header
        header = MessageHeader(
            command_code=asked.command_code,
            application_id=asked.application_id,
            hop_by_hop_identifier=asked.hop_by_hop_identifier,
            end_to_end_identifier=asked.end_to_end_identifier,
        )
        header.is_proxyable = asked.is_proxyable
        header.is_error = 3000 <= code < 4000
        avps: list[Any] = []
        session = request.first(constants.AVP_SESSION_ID)
        if session is not None:
            avps.append(codec.copy(session))
        avps += [
            Avp.new(constants.AVP_RESULT_CODE, value=code),
            Avp.new(constants.AVP_ORIGIN_HOST, value=self.identity.origin_host.encode()),
            Avp.new(constants.AVP_ORIGIN_REALM, value=self.identity.realm.encode()),
        ]
        if app is not None:
            avps += app.echo(request)
        avps.append(Avp.new(constants.AVP_ERROR_MESSAGE, value=text))
        if failed:
            avps.append(codec.failed_avp(*failed))
        return Message(header, avps)


class Connection:
    """One TCP connection: its reader loop, its watchdog, its pending requests of ours."""

    def __init__(self, node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.node, self.reader, self.writer = node, reader, writer
        address = writer.get_extra_info("peername") or ("?", 0)
        self.address = f"{address[0]}:{address[1]}"
        self.local_ip = str((writer.get_extra_info("sockname") or ("127.0.0.1",))[0])
        self.peer: Peer | None = None
        self.watchdog = Watchdog.OKAY
        self.closed = False
        self.done = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self._hop_by_hop = itertools.count(random.getrandbits(31))
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._dwr_pending = False
        self._deadline = 0.0
        self._watch: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"{self.peer.host if self.peer else 'unknown peer'} at {self.address}"

    async def run(self) -> None:
        reason = "closed by the peer"
        try:
            await self._read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except TimeoutError:
            reason = "no CER in time"
        except codec.Garbage as garbage:
            reason = f"garbage: {garbage}"
            self._count_error()
            if self.peer is None:  # a peer's connection says it in its closing line
                log.warning("%s sent garbage (%s): disconnected", self, garbage)
        except _Violation as violation:
            reason = str(violation)
            self._count_error()
            if self.peer is None:
                log.warning("%s: %s: disconnected", self, violation)
        finally:
            self.close(reason)
            await self._closed()

    async def _read(self) -> None:
        while not self.closed:
            wait = None if self.peer is not None else self.node.watchdog_seconds
            header = await asyncio.wait_for(self.reader.readexactly(4), wait)
            length = codec.message_length(header)
            data = header + await self.reader.readexactly(length - 4)
            self._received(codec.decode(data))

    def _received(self, inbound: codec.Inbound) -> None:
        header = inbound.header
        self._restart_timer()
        if self.watchdog is Watchdog.SUSPECT:  # any message brings it back (RFC 3539)
            self.watchdog = Watchdog.OKAY
            if self.peer is not None:
                self.peer.refresh(f"{self.address} answers again")
        if not header.is_request:
            if header.command_code == DWR:
                self._dwr_pending = False
            waiter = self._pending.pop(header.hop_by_hop_identifier, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(inbound.message)
            if header.command_code == DPR:
                self.close("DPA to our DPR")
            return
        if self.peer is None:
            if header.command_code != CER:
                raise _Violation(f"command {header.command_code} before CER")
            self._capabilities(inbound)
        elif header.command_code == CER:
            self.send(self._cea(inbound, SUCCESS))  # a repeated CER is answered as the first was
        elif header.command_code == DWR:
            answer = DeviceWatchdogAnswer(inbound.message.to_answer().header)
            self._identify(answer)
            answer.result_code = SUCCESS
            self.send(answer)
        elif header.command_code == DPR:
            answer = DisconnectPeerAnswer(inbound.message.to_answer().header)
            self._identify(answer)
            answer.result_code = SUCCESS
            self.send(answer)
            self.close(f"DPR (cause {inbound.message.disconnect_cause})")
        else:
            self._spawn(self._serve(inbound))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _ask(self, message: Any) -> None:
        await self.request(message, self.node.watchdog_seconds * 3)

    async def _serve(self, request: codec.Inbound) -> None:
        peer = self.peer
        assert peer is not None
        peer.counters.requests += 1
        try:
            answer = await self.node.route(request, self)
        except Exception:
            log.exception("request %s from %s failed", request.header.command_code, self)
            peer.counters.errors += 1
            app = self.node.applications.get(request.header.application_id)
            answer = self.node.error_answer(request, UNABLE_TO_COMPLY, "internal error", app)
        self.send(answer)

    def send(self, message: Any) -> bool:
        """Write a message on this connection; an answer whose connection is gone is dropped
        (and counted). False when it was not written."""
        answer = not message.header.is_request
        code = result_code(message) if answer else 0
        if answer and 3000 <= code < 4000:
            message.header.is_error = True
        if self.closed:
            if answer and self.peer is not None:
                self.peer.counters.dropped += 1
                log.warning("answer %s to %s dropped: the connection is gone", code, self)
            return False
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.close("not reading what we send")
            return False
        self.writer.write(codec.encode(message))
        if answer and self.peer is not None and message.header.command_code not in BASE_COMMANDS:
            self.peer.counters.answers[code] += 1
        return True

    async def request(self, message: Any, timeout: float, end_to_end: int | None = None) -> Any | None:
        """Send a request of ours and wait for its answer (None on timeout or disconnection).
        `end_to_end`: that of a request sent before (a retransmission); else a new one."""
        message.header.is_request = True
        message.header.hop_by_hop_identifier = next(self._hop_by_hop) & 0xFFFFFFFF
        message.header.end_to_end_identifier = end_to_end if end_to_end is not None else self.node.next_end_to_end()
        waiter = asyncio.get_running_loop().create_future()
        self._pending[message.header.hop_by_hop_identifier] = waiter
        if not self.send(message):
            self._pending.pop(message.header.hop_by_hop_identifier, None)
            return None
        try:
            return await asyncio.wait_for(waiter, timeout)
        except (TimeoutError, ConnectionError):
            return None
        finally:
            self._pending.pop(message.header.hop_by_hop_identifier, None)

    def disconnect(self) -> None:
        """Send DPR (REBOOTING: we will be back); the peer's DPA, or its closing, ends the connection."""
        dpr = DisconnectPeerRequest()
        self._identify(dpr)
        dpr.disconnect_cause = DISCONNECT_REBOOTING
        dpr.header.is_request = True
        dpr.header.hop_by_hop_identifier = next(self._hop_by_hop) & 0xFFFFFFFF
        dpr.header.end_to_end_identifier = self.node.next_end_to_end()
        self.send(dpr)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(reason))
        self._pending.clear()
        self.writer.close()  # what was written still goes out first
        if self.peer is not None:
            self.peer.connections.remove(self)
            self.peer.refresh(f"{self.address} disconnected: {reason}")
        self.done.set()

    async def _closed(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    def _count_error(self) -> None:
        if self.peer is not None:
            self.peer.counters.errors += 1
        else:
            self.node.peers.garbage += 1

    # CER / CEA

    def _capabilities(self, cer: codec.Inbound) -> None:
        code, text, failed = self._refusal(cer)
        if code != SUCCESS:
            self.node.peers.refused += 1
            origin = cer.first(constants.AVP_ORIGIN_HOST)
            log.warning(
                "CER from %s at %s refused with %s: %s", _text(origin) if origin else "?", self.address, code, text
            )
            known = self.node.peers.get(_text(origin)) if origin else None
            if known is not None:
                known.counters.refused += 1
                known.noted(f"CER from {self.address} refused with {code}: {text}")
            self.send(self._cea(cer, code, text, failed))
            self.close(f"CER refused ({code})")
            return
        origin = cer.first(constants.AVP_ORIGIN_HOST)
        peer = self.node.peers.get(_text(origin))
        assert peer is not None
        self.peer = peer
        peer.connections.append(self)
        peer.counters.connections += 1
        self.send(self._cea(cer, SUCCESS))
        self._restart_timer()
        self._watch = asyncio.create_task(self._watchdog())
        peer.refresh(f"CER from {self.address} accepted")

    def _refusal(self, cer: codec.Inbound) -> tuple[int, str, Any]:
        for code in (
            constants.AVP_ORIGIN_HOST,
            constants.AVP_ORIGIN_REALM,
            constants.AVP_HOST_IP_ADDRESS,
            constants.AVP_VENDOR_ID,
            constants.AVP_PRODUCT_NAME,
        ):
            if cer.first(code) is None:
                return MISSING_AVP, "missing AVP", codec.missing(code)
        unknown = cer.unknown_mandatory()
        if unknown is not None:
            return AVP_UNSUPPORTED, f"AVP {unknown.code} is not supported", codec.copy(unknown)
        if self.node.peers.get(_text(cer.first(constants.AVP_ORIGIN_HOST))) is None:
            return UNKNOWN_PEER, "not an allowed peer", None
        message = cer.message
        applications = set(message.auth_application_id or []) | set(message.acct_application_id or [])
        for vsai in message.vendor_specific_application_id or []:
            applications |= {vsai.auth_application_id, vsai.acct_application_id}
        if not applications & {CREDIT_CONTROL, RELAY}:
            return NO_COMMON_APPLICATION, "only credit control (4) is served", None
        security = message.inband_security_id or []
        if security and 0 not in security:
            return NO_COMMON_SECURITY, "TLS after CER is not offered", None
        return SUCCESS, "", None

    def _cea(self, cer: codec.Inbound, code: int, text: str = "", failed: Any = None) -> Any:
        cea = CapabilitiesExchangeAnswer(cer.message.to_answer().header)
        cea.header.is_error = 3000 <= code < 4000
        identity = self.node.identity
        cea.result_code = code
        self._identify(cea)
        cea.host_ip_address = [self.local_ip]
        cea.vendor_id = identity.vendor_id
        cea.product_name = identity.product_name
        cea.supported_vendor_id = list(identity.supported_vendor_ids)
        cea.auth_application_id = [CREDIT_CONTROL]
        if text:
            cea.error_message = text
        if failed is not None:
            cea.avps = [codec.failed_avp(failed)]  # appended after the defined AVPs
        return cea

    def _identify(self, message: Any) -> None:
        identity = self.node.identity
        message.origin_host = identity.origin_host.encode()
        message.origin_realm = identity.realm.encode()
        message.origin_state_id = identity.origin_state_id

    # Watchdog (RFC 3539 §3.4)

    def _restart_timer(self) -> None:
        tw = self.node.watchdog_seconds
        jitter = min(2.0, tw / 10)
        self._deadline = asyncio.get_running_loop().time() + tw + random.uniform(-jitter, jitter)  # noqa: S311 (timing, not secrets)

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            delay = self._deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if self.watchdog is Watchdog.SUSPECT:
                self.close("no answer to DWR: down")
                return
            if self._dwr_pending:
                self.watchdog = Watchdog.SUSPECT
                assert self.peer is not None
                self.peer.counters.suspects += 1
                self.peer.refresh(f"{self.address} does not answer DWR")
            else:
                dwr = DeviceWatchdogRequest()
                self._identify(dwr)
                self._dwr_pending = True
                self._spawn(self._ask(dwr))  # its answer is seen by _received, its absence by the timer
            self._restart_timer()


class _Violation(Exception):
    """A peer broke the protocol in a way that leaves nothing to answer: the connection is closed."""
