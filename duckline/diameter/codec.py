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
from functools import cached_property
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
from diameter.message.commands import CreditControlAnswer, CreditControlRequest, all_commands
from diameter.message.packer import Unpacker

from duckline.diameter import lazy

HEADER_LENGTH = 20
# A credit-control request is a few hundred bytes; a length beyond this is garbage, not a message
# to wait for (the largest we accept bounds what one peer can make us buffer).
MAX_MESSAGE_LENGTH = 1 << 20
MUST_NOT_M = lazy.MUST_NOT_M
# What RFC 6733 §7.2's answer-message (an answer with the E bit) names. Anything else in one (the
# CC-Request-Type and -Number a credit-control client matches answers by) goes without the M bit:
# the grammar's "* [ AVP ]" admits it, and a strict decoder (Erlang/OTP's diameter) rejects an
# M-bit AVP the grammar does not name.
ANSWER_MESSAGE = frozenset(
    {
        constants.AVP_SESSION_ID,
        constants.AVP_ORIGIN_HOST,
        constants.AVP_ORIGIN_REALM,
        constants.AVP_RESULT_CODE,
        constants.AVP_ORIGIN_STATE_ID,
        constants.AVP_ERROR_MESSAGE,
        constants.AVP_ERROR_REPORTING_HOST,
        constants.AVP_FAILED_AVP,
        constants.AVP_EXPERIMENTAL_RESULT,
        constants.AVP_PROXY_INFO,
    }
)
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


Garbage = lazy.Garbage  # bytes that are not a Diameter message: the connection cannot find the next one
CREDIT_CONTROL = 272


def message_length(header: bytes) -> int:
    """The length a message announces in its first four bytes; raises Garbage when it cannot be one."""
    version, length = header[0], int.from_bytes(header[1:4], "big")
    if version != 1:
        raise Garbage(f"version {version}")
    if length < HEADER_LENGTH or length % 4 or length > MAX_MESSAGE_LENGTH:
        raise Garbage(f"message length {length}")
    return length


class Inbound:
    """A received message, read as little as it takes: its header, and its AVPs as `lazy.parse`
    found them (which raises Garbage unless they tile the message). `message` is the library's
    command instance (AVPs as attributes), a `lazy.View` of one for a Credit-Control-Request (the
    hot path); `avps` the library's AVPs as they came, flags and payload untouched."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.header = MessageHeader.from_bytes(data)
        self.raw = lazy.parse(data)

    @cached_property
    def message(self) -> Any:
        header = self.header
        if header.command_code == CREDIT_CONTROL and header.is_request:
            return lazy.View(CreditControlRequest, self.data, self.raw, header)
        command = all_commands.get(header.command_code)
        kind = (command.type_factory(header) or command) if command is not None else UndefinedMessage
        try:
            return kind(header, list(self.avps))
        except Exception as error:  # the library raises assorted errors on bad payloads
            raise Garbage(f"undecodable message: {error}") from None

    @cached_property
    def avps(self) -> list[Any]:
        try:
            unpacker = Unpacker(self.data)
            unpacker.set_position(HEADER_LENGTH)
            avps = []
            while not unpacker.is_done():
                avps.append(Avp.from_unpacker(unpacker))
            return avps
        except Exception as error:
            raise Garbage(f"undecodable message: {error}") from None

    def first(self, code: int, vendor: int = 0) -> Any | None:
        """The first top-level AVP with this code."""
        return next((r.avp(self.data) for r in self.raw if r.code == code and r.vendor == vendor), None)

    def all(self, code: int, vendor: int = 0) -> list[Any]:
        return [r.avp(self.data) for r in self.raw if r.code == code and r.vendor == vendor]

    def unknown_mandatory(self) -> Any | None:
        """A copy of the first AVP with the M bit that the dictionary does not know (5001
        AVP_UNSUPPORTED), inside known grouped AVPs too (not inside Failed-AVP); None if none."""
        found = _unknown_mandatory(self.raw)
        return None if found is None else found.avp(self.data)


def _unknown_mandatory(raws: tuple[lazy.Raw, ...]) -> lazy.Raw | None:
    for raw in raws:
        if not lazy.known(raw.code, raw.vendor):
            if raw.flags & Avp.avp_flag_mandatory:
                return raw
        elif raw.children is not None and not (raw.code == constants.AVP_FAILED_AVP and raw.vendor == 0):
            found = _unknown_mandatory(raw.children)
            if found is not None:
                return found
    return None


def decode(data: bytes) -> Inbound:
    """A whole message (as framed by `message_length`); raises Garbage when its AVPs do not tile it."""
    return Inbound(data)


def encode(message: Any) -> bytes:
    """The message's bytes, with the M bit of every AVP as the RFCs require."""
    if type(message) is CreditControlAnswer and not message._avps:
        return lazy.encode(message)  # the hot path: straight from its attributes
    return through_library(message)


def through_library(message: Any) -> bytes:
    """`encode` by the library's own encoding: its AVP tree, then our M bits on it."""
    avps = list(message.avps)
    for avp in avps:
        _set_flags(avp)
    if message.header.is_error:
        for avp in avps:
            if avp.vendor_id == 0 and avp.code not in ANSWER_MESSAGE:
                avp.is_mandatory = False
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
