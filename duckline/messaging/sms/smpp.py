"""Send SMS to an SMSC over SMPP 3.4 as a transmitter, with smpplib.

One TCP connection per message: connect, bind_transmitter, one submit_sm per part (waiting for each
submit_sm_resp before the next), unbind, disconnect. That costs a few round trips per message but leaves no
session to keep alive or to go stale between the worker's batches; a persistent bound session (enquire_link
keep-alives, a window of outstanding submit_sm) is a later optimisation.

Text goes out in the GSM 03.38 default alphabet (data_coding 0, one septet per octet) when every character
has a GSM code, else as UCS-2 (data_coding 8): Chinese does, 70 characters in one SMS, 67 per part of a
long one. Long messages are split by smpplib.gsm.make_parts with a 6-octet concatenation UDH (esm_class
UDHI); the parts are checked so that no part ends inside a character (a GSM escape pair or a UTF-16
surrogate pair, e.g. HKSCS characters like 𨋢), since handsets decode each part on its own.

SMPP has no idempotency key. A message sent again (its worker died before recording that it was sent) goes
with the same user_message_reference (TLV 0x0204, the ESME's own reference, 16 bits) and, when it is long,
the same concatenation reference, both taken from our reference for the message: an SMSC that keeps them
can drop the repeat, and a handset puts identical parts together instead of showing two messages.

Delivery receipts (registered_delivery) come back as deliver_sm on a receiver or transceiver session,
which this channel does not keep open: requesting them is only useful once something reads them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import smpplib.client
import smpplib.consts as c
import smpplib.exceptions
import smpplib.gsm
import smpplib.smpp

from duckline.messaging.sms import PermanentFailure

log = logging.getLogger("duckline.sms")

# smpplib's client logs every PDU as hex at DEBUG: the bind carries the password and submit_sm the text and
# number. Its records go to this logger, which drops those dumps and keeps the rest (warnings, state).
_WIRE_LOGGER = "duckline.sms.smpp.wire"


def _no_hex_dumps(record: logging.LogRecord) -> bool:
    return not (isinstance(record.msg, str) and record.msg.startswith((">>", "<<")))


logging.getLogger(_WIRE_LOGGER).addFilter(_no_hex_dumps)

# submit_sm refusals that sending the same message again cannot fix: the address, the text or the PDU is
# wrong. Anything else (throttling, a full queue, a system error, an unknown or vendor code) is retried.
PERMANENT_STATUSES = frozenset(
    {
        c.SMPP_ESME_RINVMSGLEN,
        c.SMPP_ESME_RINVCMDLEN,
        c.SMPP_ESME_RINVCMDID,
        c.SMPP_ESME_RINVPRTFLG,
        c.SMPP_ESME_RINVREGDLVFLG,
        c.SMPP_ESME_RINVSRCADR,
        c.SMPP_ESME_RINVDSTADR,
        c.SMPP_ESME_RINVSERTYP,
        c.SMPP_ESME_RINVESMCLASS,
        c.SMPP_ESME_RINVSRCTON,
        c.SMPP_ESME_RINVSRCNPI,
        c.SMPP_ESME_RINVDSTTON,
        c.SMPP_ESME_RINVDSTNPI,
        c.SMPP_ESME_RINVREPFLAG,
        c.SMPP_ESME_RINVSCHED,
        c.SMPP_ESME_RINVEXPIRY,
        c.SMPP_ESME_RX_P_APPN,
        c.SMPP_ESME_RX_R_APPN,
        c.SMPP_ESME_RINVOPTPARSTREAM,
        c.SMPP_ESME_ROPTPARNOTALLWD,
        c.SMPP_ESME_RINVPARLEN,
        c.SMPP_ESME_RMISSINGOPTPARAM,
        c.SMPP_ESME_RINVOPTPARAMVAL,
    }
)

# smpplib's GSM table has "`" where GSM 03.38 has "§" (so a backtick would arrive as "§"), and a bare ESC
# would turn the next character into an extension one: text with either goes out as UCS-2.
_NOT_GSM_SAFE = frozenset("`\x1b")
_GSM_ESCAPE = 0x1B
_UDH_LENGTH = 6  # 05 00 03 ref total seq
_MAX_PARTS = 255

_E164 = re.compile(r"\+([1-9][0-9]{6,14})")
_ALPHANUMERIC = re.compile(r"[ -~]{1,11}")


class SmppStatusError(smpplib.exceptions.PDUError):
    """The SMSC answered a PDU with an error status that a later attempt may not get (e.g. throttling)."""

    def __init__(self, command: str, status: int) -> None:
        description = c.DESCRIPTIONS.get(status, "unknown status")
        super().__init__(f"{command}: 0x{status:08X} {description}", status)
        self.command = command
        self.status = status


class SmppSmsChannel:
    name = "smpp"

    def __init__(
        self,
        host: str,
        port: int,
        system_id: str,
        password: str,
        source_addr: str,
        system_type: str = "",
        timeout: float = 10.0,
        *,
        registered_delivery: bool = False,
        source_addr_ton: int | None = None,
        source_addr_npi: int | None = None,
    ) -> None:
        # smpplib silently cuts C-octet strings to their SMPP sizes: a cut password would fail every bind.
        for field, value, limit in (
            ("system_id", system_id, 15),
            ("password", password, 8),
            ("system_type", system_type, 12),
        ):
            if len(value) > limit or not value.isascii():
                raise ValueError(f"SMPP {field} must be at most {limit} ASCII characters")
        self.host = host
        self.port = port
        self.system_id = system_id
        self.password = password
        self.system_type = system_type
        self.timeout = timeout
        self.registered_delivery = registered_delivery
        address, ton, npi = _source_address(source_addr)
        self.source_addr = address
        self.source_addr_ton = ton if source_addr_ton is None else source_addr_ton
        self.source_addr_npi = npi if source_addr_npi is None else source_addr_npi

    def send(self, to: str, body: str, reference: str | None = None) -> str:
        match = _E164.fullmatch(to)
        if match is None:
            raise PermanentFailure(f"not an E.164 number: {to!r}")
        destination = match.group(1)
        user_reference, concatenation_reference = _smpp_references(reference) if reference else (None, None)
        parts, data_coding, esm_class = split(body, concatenation_reference)

        client = smpplib.client.Client(
            self.host, self.port, timeout=self.timeout, logger_name=_WIRE_LOGGER, allow_unknown_opt_params=True
        )
        message_ids: list[str] = []
        try:
            client.connect()
            client.bind_transmitter(system_id=self.system_id, password=self.password, system_type=self.system_type)
            try:
                for part in parts:
                    message_ids.append(self._submit(client, destination, part, data_coding, esm_class, user_reference))
            except (PermanentFailure, SmppStatusError):
                _unbind_quietly(client)  # the session is sound, only the message was refused
                raise
            # Every part is accepted: a failing unbind must not make the caller send the message again.
            _unbind_quietly(client)
        finally:
            client.disconnect()
        log.info("SMS to %s sent over SMPP in %d part(s): %s", to, len(parts), ",".join(message_ids))
        return ",".join(message_ids)

    def _submit(
        self, client: Any, destination: str, part: bytes, data_coding: int, esm_class: int, user_reference: int | None
    ) -> str:
        optional = {} if user_reference is None else {"user_message_reference": user_reference}
        pdu = client.send_message(
            source_addr_ton=self.source_addr_ton,
            source_addr_npi=self.source_addr_npi,
            source_addr=self.source_addr,
            dest_addr_ton=c.SMPP_TON_INTL,
            dest_addr_npi=c.SMPP_NPI_ISDN,
            destination_addr=destination,
            esm_class=esm_class,
            data_coding=data_coding,
            registered_delivery=(
                c.SMPP_SMSC_DELIVERY_RECEIPT_BOTH if self.registered_delivery else c.SMPP_SMSC_DELIVERY_RECEIPT_NONE
            ),
            short_message=part,
            **optional,
        )
        try:
            resp = _await_response(client, pdu.sequence, "submit_sm_resp", self.timeout)
        except SmppStatusError as exc:
            if exc.status in PERMANENT_STATUSES:
                raise PermanentFailure(f"SMSC refused the message: {exc}") from exc
            raise
        message_id = resp.message_id or b""
        return message_id.decode("ascii", "replace") if isinstance(message_id, bytes) else str(message_id)


def _smpp_references(reference: str) -> tuple[int, int]:
    """The user_message_reference (16 bits) and the concatenation reference (8 bits) for our reference."""
    digest = hashlib.sha256(reference.encode("utf-8")).digest()
    return int.from_bytes(digest[:2], "big"), digest[2]


def split(body: str, concatenation_reference: int | None = None) -> tuple[list[bytes], int, int]:
    """The parts (UDH included) of a message, its data_coding and its esm_class. The parts of a long
    message share `concatenation_reference`, or a random one."""
    if not body:
        raise PermanentFailure("empty message")
    encoding = c.SMPP_ENCODING_ISO10646 if _NOT_GSM_SAFE.intersection(body) else c.SMPP_ENCODING_DEFAULT
    try:
        parts, data_coding, esm_class = smpplib.gsm.make_parts(body, encoding=encoding)
    except smpplib.exceptions.MessageTooLong as exc:
        raise PermanentFailure(f"message too long for {_MAX_PARTS} parts ({len(body)} characters)") from exc
    if esm_class & c.SMPP_GSMFEAT_UDHI:
        # make_parts cuts at a fixed octet count: redo the cut when a part would end inside a character.
        if data_coding == c.SMPP_ENCODING_DEFAULT:
            broken, unit, part_size = _ends_inside_gsm_escape, 1, c.SEVENBIT_PART_SIZE
        else:
            broken, unit, part_size = _ends_inside_surrogate, 2, c.UCS2_PART_SIZE
        if any(broken(part[_UDH_LENGTH:]) for part in parts[:-1]):
            encoded = b"".join(part[_UDH_LENGTH:] for part in parts)
            reference = parts[0][3]  # 05 00 03 ref total seq: keep make_parts' random reference
            parts = _concatenate(encoded, part_size, broken, unit, reference, len(body))
        if concatenation_reference is not None:  # 05 00 03 ref total seq
            parts = [part[:3] + bytes([concatenation_reference]) + part[4:] for part in parts]
    return parts, data_coding, esm_class


def _ends_inside_gsm_escape(payload: bytes) -> bool:
    # An extension character is ESC + code, and no code is itself ESC: a trailing ESC starts a pair.
    return payload[-1:] == bytes([_GSM_ESCAPE])


def _ends_inside_surrogate(payload: bytes) -> bool:
    return len(payload) >= 2 and 0xD8 <= payload[-2] <= 0xDB


def _concatenate(
    encoded: bytes, part_size: int, broken: Callable[[bytes], bool], unit: int, reference: int, length: int
) -> list[bytes]:
    """Cut `encoded` into parts of at most `part_size` octets, a part that would end inside a character
    one code `unit` shorter, each behind a concatenation UDH (IEI 0x00, 8-bit reference)."""
    chunks: list[bytes] = []
    start = 0
    while start < len(encoded):
        end = min(start + part_size, len(encoded))
        if end < len(encoded) and broken(encoded[start:end]):
            end -= unit
        chunks.append(encoded[start:end])
        start = end
    if len(chunks) > _MAX_PARTS:
        raise PermanentFailure(f"message too long for {_MAX_PARTS} parts ({length} characters)")
    header = bytes([5, 0, 3, reference, len(chunks)])
    return [header + bytes([number]) + chunk for number, chunk in enumerate(chunks, start=1)]


def _source_address(source_addr: str) -> tuple[str, int, int]:
    """The sender and its TON/NPI: +E.164 or a long number is international, a short number (a short code)
    has an unknown type, anything else is an alphanumeric sender ID of at most 11 characters."""
    if source_addr.startswith("+") and source_addr[1:].isdigit():
        return source_addr[1:], c.SMPP_TON_INTL, c.SMPP_NPI_ISDN
    if source_addr.isascii() and source_addr.isdigit():
        ton = c.SMPP_TON_INTL if len(source_addr) > 8 else c.SMPP_TON_UNK
        return source_addr, ton, c.SMPP_NPI_ISDN
    if _ALPHANUMERIC.fullmatch(source_addr):
        return source_addr, c.SMPP_TON_ALNUM, c.SMPP_NPI_UNK
    raise ValueError(f"SMPP source_addr must be a number or up to 11 ASCII characters, not {source_addr!r}")


def _await_response(client: Any, sequence: int, command: str, timeout: float) -> Any:
    """Read PDUs until the response to `sequence`; answer what the SMSC asks meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        pdu = client.read_pdu()  # each read is bounded by the socket timeout
        if pdu.command == "enquire_link":
            answer = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
            answer.sequence = pdu.sequence
            client.send_pdu(answer)
        elif pdu.command == "unbind":
            answer = smpplib.smpp.make_pdu("unbind_resp", client=client)
            answer.sequence = pdu.sequence
            client.send_pdu(answer)
            raise smpplib.exceptions.ConnectionError("the SMSC closed the session")
        elif pdu.sequence == sequence and pdu.command in (command, "generic_nack"):
            if pdu.is_error():
                raise SmppStatusError(pdu.command, int(pdu.status))
            if pdu.command == command:
                return pdu
        else:
            log.debug("SMPP: ignoring %s (sequence %s) while waiting for %s", pdu.command, pdu.sequence, command)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {command} from the SMSC within {timeout} s")


def _unbind_quietly(client: Any) -> None:
    try:
        pdu = smpplib.smpp.make_pdu("unbind", client=client)
        client.send_pdu(pdu)
        _await_response(client, pdu.sequence, "unbind_resp", client.timeout)
    except (smpplib.exceptions.ConnectionError, smpplib.exceptions.PDUError, OSError) as exc:
        log.debug("SMPP unbind failed (ignored): %r", exc)
