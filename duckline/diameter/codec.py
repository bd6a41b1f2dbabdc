"""Diameter bytes on the wire: framing, decoding and encoding with python-diameter's message and
AVP classes (its dictionary names and types every AVP), plus what RFC 6733 asks of every message
we send that the library leaves to its caller:

* the M bit: set on every AVP the RFCs mark "MUST", cleared on the few marked "MUST NOT"
  (Product-Name, Error-Message, Error-Reporting-Host, Firmware-Revision; RFC 6733 §4.5). The
  library's command classes clear it on Origin-Host and Origin-Realm of a CCA, so `encode` sets
  the flags itself, from the dictionary, on the whole AVP tree — except inside Failed-AVP, which
  carries a copy of someone else's AVP as it came;
* Failed-AVP (§7.5): a copy of the offending AVP, or, for a missing one, an AVP of that code with a
  zero-filled payload of the minimum size its type allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from diameter.message import Avp, Message, MessageHeader, UndefinedMessage, constants
from diameter.message.avp import (
    AvpAddress,
    AvpFloat32,
    AvpFloat64,
    AvpGrouped,
    AvpInteger32,
    AvpInteger64,
    AvpTime,
    AvpUnsigned32,
    AvpUnsigned64,
)
from diameter.message.avp.avp import get_avp_dictionary_entry
from diameter.message.commands import all_commands
from diameter.message.packer import Unpacker

HEADER_LENGTH = 20
# A credit-control request is a few hundred bytes; a length beyond this is garbage, not a message
# to wait for (the largest we accept bounds what one peer can make us buffer).
MAX_MESSAGE_LENGTH = 1 << 20
MUST_NOT_M = {
    constants.AVP_PRODUCT_NAME,
    constants.AVP_ERROR_MESSAGE,
    constants.AVP_ERROR_REPORTING_HOST,
    constants.AVP_FIRMWARE_REVISION,
}
# The smallest payload each AVP type can have (an Address: family + IPv4).
_MIN_PAYLOAD = {
    AvpAddress: 6,
    AvpFloat32: 4,
    AvpFloat64: 8,
    AvpInteger32: 4,
    AvpInteger64: 8,
    AvpTime: 4,
    AvpUnsigned32: 4,
    AvpUnsigned64: 8,
}


class Garbage(Exception):
    """Bytes that are not a Diameter message: the connection cannot be trusted to find the next one."""


def message_length(header: bytes) -> int:
    """The length a message announces in its first four bytes; raises Garbage when it cannot be one."""
    version, length = header[0], int.from_bytes(header[1:4], "big")
    if version != 1:
        raise Garbage(f"version {version}")
    if length < HEADER_LENGTH or length % 4 or length > MAX_MESSAGE_LENGTH:
        raise Garbage(f"message length {length}")
    return length


@dataclass(frozen=True)
class Inbound:
    """A received message: the library's command instance (AVPs as attributes) and the AVPs as
    they came, flags and payload untouched (the instance regenerates its own from attributes)."""

    message: Any
    avps: list[Any]

    def first(self, code: int, vendor: int = 0) -> Any | None:
        """The first top-level AVP with this code."""
        return next((a for a in self.avps if a.code == code and a.vendor_id == vendor), None)

    def all(self, code: int, vendor: int = 0) -> list[Any]:
        return [a for a in self.avps if a.code == code and a.vendor_id == vendor]


def decode(data: bytes) -> Inbound:
    """A whole message (as framed by `message_length`); raises Garbage when it cannot be decoded."""
    _check_avps(data, HEADER_LENGTH, len(data))
    try:
        header = MessageHeader.from_bytes(data)
        unpacker = Unpacker(data)
        unpacker.set_position(HEADER_LENGTH)
        avps = []
        while not unpacker.is_done():
            avps.append(Avp.from_unpacker(unpacker))
        command = all_commands.get(header.command_code)
        kind = (command.type_factory(header) or command) if command is not None else UndefinedMessage
        return Inbound(kind(header, list(avps)), avps)
    except Exception as error:  # the library raises assorted errors on bad payloads
        raise Garbage(f"undecodable message: {error}") from None


def _check_avps(data: bytes, start: int, end: int) -> None:
    """AVP headers must tile the message exactly, grouped ones too: the library's decoder does not
    check that an AVP's length fits inside what holds it."""
    at = start
    while at < end:
        if end - at < 8:
            raise Garbage("truncated AVP header")
        code = int.from_bytes(data[at : at + 4], "big")
        flags, length = data[at + 4], int.from_bytes(data[at + 5 : at + 8], "big")
        vendor = int.from_bytes(data[at + 8 : at + 12], "big") if flags & Avp.avp_flag_vendor else 0
        header = 12 if flags & Avp.avp_flag_vendor else 8
        padded = (length + 3) & ~3
        if length < header or at + padded > end:
            raise Garbage(f"AVP {code} length {length}")
        entry = get_avp_dictionary_entry(code, vendor)
        if entry is not None and issubclass(entry["type"], AvpGrouped):
            _check_avps(data, at + header, at + length)
        at += padded


def encode(message: Any) -> bytes:
    """The message's bytes, with the M bit of every AVP as the RFCs require."""
    avps = list(message.avps)
    for avp in avps:
        _set_flags(avp)
    return bytes(Message(message.header, avps).as_bytes())


def _set_flags(avp: Any) -> None:
    if avp.code == constants.AVP_FAILED_AVP and avp.vendor_id == 0:
        avp.is_mandatory = True
        return  # what it holds is a copy, flags and all
    if isinstance(avp, AvpGrouped):
        children = avp.value
        for child in children:
            _set_flags(child)
        avp.value = children  # a grouped AVP's payload is packed when its value is set
    if avp.vendor_id == 0 and avp.code in MUST_NOT_M:
        avp.is_mandatory = False
        return
    entry = get_avp_dictionary_entry(avp.code, avp.vendor_id)
    if entry is not None and entry.get("mandatory") is not None:
        avp.is_mandatory = bool(entry["mandatory"])


def walk(avps: list[Any]) -> Iterator[Any]:
    """Every AVP of a tree, depth first (Failed-AVP's content included)."""
    for avp in avps:
        yield avp
        if isinstance(avp, AvpGrouped):
            yield from walk(avp.value)


def copy(avp: Any) -> Any:
    """An AVP exactly as it came (flags, vendor and payload), to quote in a Failed-AVP."""
    return Avp(avp.code, avp.vendor_id, bytes(avp.payload), avp.flags)


def missing(code: int, vendor: int = 0) -> Any:
    """The AVP §7.5 quotes for a missing one: its code, a zero-filled payload of minimum size."""
    entry = get_avp_dictionary_entry(code, vendor)
    size = next((n for t, n in _MIN_PAYLOAD.items() if entry is not None and issubclass(entry["type"], t)), 0)
    flags = Avp.avp_flag_mandatory if entry is None or entry.get("mandatory") else 0
    return Avp(code, vendor, bytes(size), flags)


def quote(avps: list[Any], path: tuple[tuple[int, int], ...]) -> Any:
    """What Failed-AVP says of the AVP at `path` (the (code, vendor) of each grouped AVP that holds
    it, then its own): a copy, inside copies of its parents holding it alone (§7.5); when it is
    absent, a zero-filled one (`missing`)."""
    found = _quote(avps, path)
    return found if found is not None else missing(*path[-1])


def _quote(avps: list[Any], path: tuple[tuple[int, int], ...]) -> Any | None:
    (code, vendor), inner = path[0], path[1:]
    for avp in avps:
        if avp.code != code or avp.vendor_id != vendor:
            continue
        if not inner:
            return copy(avp)
        if isinstance(avp, AvpGrouped):
            child = _quote(avp.value, inner)
            if child is not None:
                return Avp(code, vendor, bytes(child.as_bytes()), avp.flags)
    return None


def failed_avp(*avps: Any) -> Any:
    """A Failed-AVP holding the given AVPs."""
    return Avp.new(constants.AVP_FAILED_AVP, value=list(avps))


def unknown_mandatory(avps: list[Any]) -> Any | None:
    """The first AVP with the M bit that the dictionary does not know (5001 AVP_UNSUPPORTED), inside
    known grouped AVPs too; None when there is none."""
    for avp in avps:
        entry = get_avp_dictionary_entry(avp.code, avp.vendor_id)
        if entry is None:
            if avp.is_mandatory:
                return avp
            continue
        if isinstance(avp, AvpGrouped) and avp.code != constants.AVP_FAILED_AVP:
            found = unknown_mandatory(avp.value)
            if found is not None:
                return found
    return None
