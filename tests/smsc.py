"""A small SMSC for tests: a real SMPP 3.4 peer on loopback, built on smpplib's PDU classes.

It answers bind_transmitter / bind_transceiver (ESME_RBINDFAIL for a wrong system_id or password),
submit_sm (recorded as it arrived: raw short_message octets, data_coding, esm_class, addresses; answered
with a message_id, or with an error status chosen per destination), enquire_link and unbind. Like a real
SMSC it refuses a submit_sm before a bind, and a short_message longer than one SMS (160 septets in the GSM
alphabet, 140 octets otherwise, the UDH included) with ESME_RINVMSGLEN.

`Submission.text` decodes one part alone (as a handset does) and `Smsc.messages()` reassembles
concatenated parts from their UDH (IEI 0x00 or 0x08), so tests check the text that arrived. Decoding uses
this module's own GSM 03.38 table, not smpplib's.
"""

from __future__ import annotations

import contextlib
import math
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass
from typing import Any

import smpplib.consts as c
import smpplib.smpp
from smpplib.client import SimpleSequenceGenerator

# 3GPP TS 23.038, 6.2.1: the default alphabet and its extension table (reached with ESC, 0x1B).
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
assert len(GSM_BASIC) == 128


def gsm_decode(septets: bytes) -> str:
    """Unpacked GSM 03.38 (one septet per octet, as SMPP carries data_coding 0)."""
    out: list[str] = []
    escaped = False
    for septet in septets:
        if septet > 0x7F:
            raise ValueError(f"not a septet: 0x{septet:02X}")
        if escaped:
            out.append(GSM_EXTENSION.get(septet, GSM_BASIC[septet]))  # unknown extension: the basic character
            escaped = False
        elif septet == 0x1B:
            escaped = True
        else:
            out.append(GSM_BASIC[septet])
    if escaped:
        raise ValueError("the text ends inside an escape sequence")
    return "".join(out)


def decode(payload: bytes, data_coding: int) -> str:
    if data_coding == c.SMPP_ENCODING_DEFAULT:
        return gsm_decode(payload)
    if data_coding == c.SMPP_ENCODING_ISO10646:
        return payload.decode("utf-16-be")  # strict: a part ending in half a surrogate pair fails
    if data_coding == c.SMPP_ENCODING_ISO88591:
        return payload.decode("latin-1")
    if data_coding == c.SMPP_ENCODING_IA5:
        return payload.decode("ascii")
    raise ValueError(f"data_coding 0x{data_coding:02X} is not text")


@dataclass(frozen=True)
class Concatenation:
    reference: int
    total: int
    number: int


@dataclass(frozen=True)
class Submission:
    system_id: str
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    message_id: str | None  # None when the submit_sm was refused
    status: int
    user_message_reference: int | None = None  # the ESME's own reference (TLV 0x0204), if it sent one

    @property
    def udh(self) -> bytes:
        if not self.esm_class & c.SMPP_GSMFEAT_UDHI:
            return b""
        return self.short_message[: 1 + self.short_message[0]]

    @property
    def payload(self) -> bytes:
        return self.short_message[len(self.udh) :]

    @property
    def concatenation(self) -> Concatenation | None:
        udh = self.udh
        position = 1
        while position + 2 <= len(udh):
            iei, length = udh[position], udh[position + 1]
            value = udh[position + 2 : position + 2 + length]
            if iei == 0x00 and length == 3:
                return Concatenation(value[0], value[1], value[2])
            if iei == 0x08 and length == 4:
                return Concatenation(int.from_bytes(value[:2], "big"), value[2], value[3])
            position += 2 + length
        return None

    @property
    def text(self) -> str:
        """This part alone, decoded as a handset would."""
        return decode(self.payload, self.data_coding)


class Smsc:
    def __init__(self, system_id: str, password: str) -> None:
        self.system_id = system_id
        self.password = password
        self.submissions: list[Submission] = []
        self.binds: list[tuple[str, str, int]] = []  # (command, system_id, status)
        self.unbinds = 0
        self.answer_submits = True  # False: read submit_sm and say nothing (a hung SMSC)
        self.answer_first: int | None = None  # answer this many submit_sm, then hang like the above
        self._statuses: dict[str, int] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self._connections: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.smsc = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="test-smsc", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Smsc:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> Smsc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def refuse(self, destination_addr: str, status: int) -> None:
        """Answer every submit_sm to this destination (digits, no "+") with `status`."""
        self._statuses[destination_addr] = status

    def accepted(self) -> list[Submission]:
        return [s for s in self.submissions if s.status == c.SMPP_ESME_ROK]

    def messages(self, destination_addr: str | None = None) -> list[str]:
        """The texts that arrived, concatenated parts put together in order (a message whose parts are not
        all there is left out)."""
        texts: list[str] = []
        groups: dict[tuple[str, str, int, int, int], dict[int, Submission]] = {}
        for submission in self.accepted():
            if destination_addr is not None and submission.destination_addr != destination_addr:
                continue
            concatenation = submission.concatenation
            if concatenation is None:
                texts.append(submission.text)
                continue
            key = (
                submission.source_addr,
                submission.destination_addr,
                submission.data_coding,
                concatenation.reference,
                concatenation.total,
            )
            group = groups.setdefault(key, {})
            group[concatenation.number] = submission
            if len(group) == concatenation.total:
                payload = b"".join(group[n].payload for n in range(1, concatenation.total + 1))
                texts.append(decode(payload, submission.data_coding))
                del groups[key]
        return texts

    # -- called from the connection threads --

    def _next_message_id(self) -> str:
        with self._lock:
            self._counter += 1
            return f"smsc-{self._counter:06d}"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    smsc: Smsc


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(30)
        self.sequence = SimpleSequenceGenerator()
        self.bound_as: str | None = None
        self.bound_system_id = ""
        with self.server.smsc._lock:
            self.server.smsc._connections.add(self.request)

    def finish(self) -> None:
        with self.server.smsc._lock:
            self.server.smsc._connections.discard(self.request)

    def handle(self) -> None:
        while True:
            try:
                raw = self._read_pdu()
            except (OSError, ConnectionError):
                return
            if raw is None:
                return
            pdu = smpplib.smpp.parse_pdu(raw, client=self.sequence, allow_unknown_opt_params=True)
            if pdu.command in ("bind_transmitter", "bind_transceiver", "bind_receiver"):
                self._bind(pdu)
            elif pdu.command == "submit_sm":
                self._submit(pdu)
            elif pdu.command == "enquire_link":
                self._answer(pdu, "enquire_link_resp")
            elif pdu.command == "unbind":
                self.server.smsc.unbinds += 1
                self._answer(pdu, "unbind_resp")
                self.bound_as = None
            else:
                self._answer(pdu, "generic_nack", c.SMPP_ESME_RINVCMDID)

    def _read_pdu(self) -> bytes | None:
        header = self._recv(4)
        if header is None:
            return None
        (length,) = struct.unpack(">L", header)
        rest = self._recv(length - 4)
        return None if rest is None else header + rest

    def _recv(self, size: int) -> bytes | None:
        chunks = b""
        while len(chunks) < size:
            chunk = self.request.recv(size - len(chunks))
            if not chunk:
                return None
            chunks += chunk
        return chunks

    def _answer(self, request: Any, command: str, status: int = c.SMPP_ESME_ROK, **fields: Any) -> None:
        response = smpplib.smpp.make_pdu(command, client=self.sequence, status=status, **fields)
        response.sequence = request.sequence
        self.request.sendall(response.generate())

    def _bind(self, pdu: Any) -> None:
        smsc = self.server.smsc
        system_id = _text(pdu.system_id)
        ok = self.bound_as is None and system_id == smsc.system_id and _text(pdu.password) == smsc.password
        status = c.SMPP_ESME_ROK if ok else c.SMPP_ESME_RBINDFAIL
        smsc.binds.append((pdu.command, system_id, status))
        if ok:
            self.bound_as, self.bound_system_id = pdu.command, system_id
        self._answer(pdu, f"{pdu.command}_resp", status, system_id="TESTSMSC")

    def _submit(self, pdu: Any) -> None:
        smsc = self.server.smsc
        short_message = bytes(pdu.short_message or b"")
        destination = _text(pdu.destination_addr)
        if self.bound_as not in ("bind_transmitter", "bind_transceiver"):
            status = c.SMPP_ESME_RINVBNDSTS
        elif not _fits_one_sms(short_message, pdu.data_coding or 0, pdu.esm_class or 0):
            status = c.SMPP_ESME_RINVMSGLEN
        else:
            status = smsc._statuses.get(destination, c.SMPP_ESME_ROK)
        message_id = smsc._next_message_id() if status == c.SMPP_ESME_ROK else None
        smsc.submissions.append(
            Submission(
                system_id=self.bound_system_id,
                source_addr=_text(pdu.source_addr),
                source_addr_ton=pdu.source_addr_ton or 0,
                source_addr_npi=pdu.source_addr_npi or 0,
                destination_addr=destination,
                dest_addr_ton=pdu.dest_addr_ton or 0,
                dest_addr_npi=pdu.dest_addr_npi or 0,
                esm_class=pdu.esm_class or 0,
                data_coding=pdu.data_coding or 0,
                registered_delivery=pdu.registered_delivery or 0,
                short_message=short_message,
                message_id=message_id,
                status=status,
                user_message_reference=getattr(pdu, "user_message_reference", None),
            )
        )
        if not smsc.answer_submits or (smsc.answer_first is not None and len(smsc.submissions) > smsc.answer_first):
            return
        self._answer(pdu, "submit_sm_resp", status, message_id=message_id or "")


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _fits_one_sms(short_message: bytes, data_coding: int, esm_class: int) -> bool:
    udh_length = 1 + short_message[0] if esm_class & c.SMPP_GSMFEAT_UDHI and short_message else 0
    if udh_length > len(short_message):
        return False
    if data_coding == c.SMPP_ENCODING_DEFAULT:  # septets; a UDH takes whole septets
        return math.ceil(udh_length * 8 / 7) + len(short_message) - udh_length <= 160
    return len(short_message) <= 140
