"""A network element at the byte level, for what a well-behaved stack would never do: send garbage,
drop a connection mid-request, leave a DWR unanswered, open two connections under one name, leave
out or add AVPs. Messages are built with python-diameter's classes and written by hand; what
comes back is read as it came (flags and payloads untouched). Every byte each way is kept, so a
test can write the exchange to a pcap file for tshark."""

from __future__ import annotations

import itertools
import shutil
import socket
import struct
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diameter.message import Avp, Message, constants
from diameter.message.avp.grouped import RequestedServiceUnit, UsedServiceUnit
from diameter.message.commands import (
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DeviceWatchdogAnswer,
    DeviceWatchdogRequest,
)

from duckline.diameter import codec

OPERATOR_REALM = "operator.test"
DATA = "32251@3gpp.org"
INITIAL, UPDATE, TERMINATE, EVENT = 1, 2, 3, 4
_ids = itertools.count(0x1000)


class RawPeer:
    """One TCP connection to the server, driven step by step by the test."""

    def __init__(self, port: int, origin_host: str, realm: str = OPERATOR_REALM) -> None:
        self.port, self.origin_host, self.realm = port, origin_host, realm
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.local_port = int(self.sock.getsockname()[1])
        self.exchange: list[tuple[bool, bytes]] = []  # (sent by us, message bytes)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send_bytes(self, data: bytes) -> None:
        self.exchange.append((True, data))
        self.sock.sendall(data)

    def send(self, message: Any) -> int:
        """Send a request (ids assigned here); returns its Hop-by-Hop id."""
        header = message.header
        if not header.hop_by_hop_identifier:
            header.hop_by_hop_identifier = next(_ids)
            header.end_to_end_identifier = next(_ids)
        self.send_bytes(message.as_bytes())
        return int(header.hop_by_hop_identifier)

    def read(self, timeout: float = 10) -> codec.Inbound | None:
        """The next message, or None when the server closed the connection."""
        self.sock.settimeout(timeout)
        while True:
            if len(self._buffer) >= 4:
                length = int.from_bytes(self._buffer[1:4], "big")
                if len(self._buffer) >= length:
                    data, self._buffer = self._buffer[:length], self._buffer[length:]
                    self.exchange.append((False, data))
                    return codec.decode(data)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk

    def answer_to(self, hop_by_hop: int, timeout: float = 10, answer_dwr: bool = True) -> codec.Inbound:
        """Read until the answer with this Hop-by-Hop id (answering DWRs on the way)."""
        deadline = time.monotonic() + timeout
        while True:
            inbound = self.read(max(0.1, deadline - time.monotonic()))
            assert inbound is not None, "the server closed the connection"
            header = inbound.message.header
            if header.is_request and header.command_code == 280 and answer_dwr:
                self.answer_dwr(inbound)
                continue
            if not header.is_request and header.hop_by_hop_identifier == hop_by_hop:
                return inbound

    def request_from_server(self, command: int, timeout: float = 10) -> codec.Inbound:
        """Read until the server sends a request with this command code (a RAR or ASR of its own),
        answering DWRs on the way; answers read meanwhile are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            inbound = self.read(max(0.1, deadline - time.monotonic()))
            assert inbound is not None, "the server closed the connection"
            header = inbound.message.header
            if header.is_request and header.command_code == 280:
                self.answer_dwr(inbound)
            elif header.is_request and header.command_code == command:
                return inbound

    def answer_request(self, request: codec.Inbound, result_code: int) -> None:
        """Answer a request of the server's (RAA, ASA): its Session-Id, the Result-Code, our origin."""
        answer = request.message.to_answer()
        answer.session_id = request.message.session_id
        answer.result_code = result_code
        answer.origin_host, answer.origin_realm = self.origin_host.encode(), self.realm.encode()
        self.send_bytes(answer.as_bytes())

    def answer_dwr(self, dwr: codec.Inbound) -> None:
        dwa = DeviceWatchdogAnswer(dwr.message.to_answer().header)
        dwa.result_code = 2001
        dwa.origin_host, dwa.origin_realm = self.origin_host.encode(), self.realm.encode()
        self.send_bytes(dwa.as_bytes())

    def is_closed(self, timeout: float = 10) -> bool:
        """True when the server closes the connection within `timeout` (messages read meanwhile are
        dropped)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.read(max(0.1, deadline - time.monotonic())) is None:
                    return True
        except TimeoutError:
            return False
        except ConnectionError:  # reset: closed too
            return True
        return False

    def cer(self, build: Callable[[Any], None] | None = None) -> codec.Inbound:
        """Capabilities exchange; `build` may change the CER before it goes."""
        cer = CapabilitiesExchangeRequest()
        cer.header.is_request = True
        cer.origin_host, cer.origin_realm = self.origin_host.encode(), self.realm.encode()
        cer.host_ip_address = ["127.0.0.1"]
        cer.vendor_id = 0
        cer.product_name = "duckline-tests"
        cer.auth_application_id = [constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION]
        if build is not None:
            build(cer)
        return self.answer_to(self.send(cer))

    def dwr(self) -> codec.Inbound:
        dwr = DeviceWatchdogRequest()
        dwr.header.is_request = True
        dwr.origin_host, dwr.origin_realm = self.origin_host.encode(), self.realm.encode()
        return self.answer_to(self.send(dwr), timeout=5)

    def ccr(
        self,
        session: str,
        number: int,
        request_type: int,
        msisdn: str | None = None,
        *,
        asked: int | None = None,
        used: int | None = None,
        destination_realm: str = "duckline.example",
    ) -> Any:
        """A Gy data request with one MSCC (rating group 10), as a packet gateway sends it."""
        ccr = CreditControlRequest()
        ccr.header.is_request = True
        ccr.header.is_proxyable = True
        ccr.header.application_id = constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
        ccr.session_id = session
        ccr.origin_host, ccr.origin_realm = self.origin_host.encode(), self.realm.encode()
        ccr.destination_realm = destination_realm.encode()
        ccr.auth_application_id = constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION
        ccr.service_context_id = DATA
        ccr.cc_request_type, ccr.cc_request_number = request_type, number
        ccr.event_timestamp = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
        if msisdn is not None:
            ccr.add_subscription_id(constants.E_SUBSCRIPTION_ID_TYPE_END_USER_E164, msisdn.removeprefix("+"))
        ccr.add_multiple_services_credit_control(
            requested_service_unit=RequestedServiceUnit(cc_total_octets=asked) if asked is not None else None,
            used_service_unit=UsedServiceUnit(cc_total_octets=used) if used is not None else None,
            rating_group=10,
        )
        return ccr

    def ask(self, ccr: Any, timeout: float = 15) -> codec.Inbound:
        return self.answer_to(self.send(ccr), timeout)


def without(message: Any, code: int) -> Any:
    """The message with every top-level AVP of this code removed (for requests the library's
    classes would not let us build)."""
    avps = [a for a in message.avps if a.code != code]
    return _Frozen(message.header, avps)


def adding(message: Any, *extra: Any) -> Any:
    return _Frozen(message.header, [*message.avps, *extra])


class _Frozen:
    """A message as a fixed list of AVPs."""

    def __init__(self, header: Any, avps: list[Any]) -> None:
        self.header, self.avps = header, avps

    def as_bytes(self) -> bytes:
        return bytes(Message(self.header, self.avps).as_bytes())


def value_of(inbound: codec.Inbound, code: int) -> Any:
    avp = inbound.first(code)
    return None if avp is None else avp.value


def failed_avps(inbound: codec.Inbound) -> list[Any]:
    failed = inbound.first(constants.AVP_FAILED_AVP)
    assert failed is not None, "no Failed-AVP"
    return list(failed.value)


def raw_avp(code: int, payload: bytes, *, mandatory: bool, vendor: int = 0) -> Any:
    return Avp(code, vendor, payload, Avp.avp_flag_mandatory if mandatory else 0)


def write_pcap(path: Path, exchange: list[tuple[bool, bytes]], client_port: int, server_port: int) -> None:
    """The messages as one TCP conversation on loopback (raw IPv4 link type), each message one
    segment with consecutive sequence numbers, for tshark to reassemble and dissect."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    seq = {True: 1000, False: 5000}
    for n, (from_client, data) in enumerate(exchange):
        sport, dport = (client_port, server_port) if from_client else (server_port, client_port)
        ack = seq[not from_client]
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq[from_client], ack, 5 << 4, 0x18, 65535, 0, 0)
        total = 20 + len(tcp) + len(data)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, n, 0, 64, 6, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        packet = ip + tcp + data
        out.append(struct.pack("<IIII", 1_700_000_000 + n, 0, len(packet), len(packet)) + packet)
        seq[from_client] += len(data)
    path.write_bytes(b"".join(out))


def tshark_packets(peer: RawPeer, server_port: int, capture: Path) -> list[ElementTree.Element]:
    """The peer's exchange written as a capture and decoded by tshark (PDML), as a foreign
    decoder sees it; none of its packets may be malformed."""
    write_pcap(capture, peer.exchange, peer.local_port, server_port)
    decoded = subprocess.run(  # noqa: S603
        [
            shutil.which("tshark") or "tshark",
            "-r",
            str(capture),
            "-d",
            f"tcp.port=={server_port},diameter",
            "-T",
            "pdml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert decoded.returncode == 0, decoded.stderr
    packets = ElementTree.fromstring(decoded.stdout).findall("packet")  # noqa: S314 (tshark's output)
    assert not [p for p in packets if p.find("proto[@name='_ws.malformed']") is not None], "tshark: malformed"
    return packets
