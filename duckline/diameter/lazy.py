"""The credit-control hot path: python-diameter's message definitions (attribute names, AVP codes
and types, the dictionary's M bits) without the cost of its object model.

The library decodes every AVP of a message into attributes and regenerates the whole AVP tree to
encode one: about 390 µs of CPU for a CCR and its CCA here, most of what a request costs. So:

* `parse` walks a message's AVPs once (checking that they tile it, grouped ones too) into a tree
  of offsets; `View` reads that tree lazily with the library's attribute names
  (`ccr.multiple_services_credit_control[0].requested_service_unit.cc_total_octets`), decoding
  only the AVPs asked for, each with the library's own AVP type;
* `encode` packs a library message instance straight from its attributes: one walk of its
  `avp_def`, the M bit from the dictionary as `codec` sets it.

tests/diameter/test_lazy.py holds both to the library: the same values, the same bytes.
"""

from __future__ import annotations

import struct
from functools import cache
from typing import Any, NamedTuple

from diameter.message import MessageHeader
from diameter.message.avp import (
    AvpGrouped,
    AvpInteger32,
    AvpInteger64,
    AvpOctetString,
    AvpUnsigned32,
    AvpUnsigned64,
    AvpUtf8String,
)
from diameter.message.avp.avp import Avp, get_avp_dictionary_entry

HEADER_LENGTH = 20
# Sent without the M bit (RFC 6733 §4.5): Product-Name, Error-Message, Error-Reporting-Host, Firmware-Revision.
MUST_NOT_M = frozenset({269, 281, 294, 267})
VENDOR_BIT, MANDATORY_BIT = Avp.avp_flag_vendor, Avp.avp_flag_mandatory


class Garbage(Exception):
    """Bytes that are not a Diameter message."""


class Raw(NamedTuple):
    """One AVP as it came: where its payload lies in the message, and, for a grouped AVP of the
    dictionary, its children."""

    code: int
    vendor: int
    flags: int
    start: int  # of the payload
    end: int
    children: tuple[Raw, ...] | None

    def avp(self, data: bytes) -> Any:
        """The library's AVP instance (its type from the dictionary; Avp for an unknown code)."""
        kind = _entry(self.code, self.vendor)[0] or Avp
        return kind(self.code, self.vendor, bytes(data[self.start : self.end]), self.flags)


@cache
def _entry(code: int, vendor: int) -> tuple[type | None, bool | None]:
    """(AVP type, M bit) as the library's dictionary has them; (None, None) for an unknown AVP."""
    entry = get_avp_dictionary_entry(code, vendor)
    return (None, None) if entry is None else (entry["type"], entry.get("mandatory"))


def known(code: int, vendor: int) -> bool:
    return _entry(code, vendor)[0] is not None


def parse(data: bytes, start: int = HEADER_LENGTH, end: int | None = None) -> tuple[Raw, ...]:
    """The AVPs between start and end; raises Garbage unless their headers tile it exactly (the
    library's decoder does not check that an AVP fits inside what holds it)."""
    end = len(data) if end is None else end
    found = []
    at = start
    while at < end:
        if end - at < 8:
            raise Garbage("truncated AVP header")
        code, word = struct.unpack_from(">II", data, at)
        flags, length = word >> 24, word & 0xFFFFFF
        if flags & VENDOR_BIT:
            if length < 12 or end - at < 12:
                raise Garbage(f"AVP {code} length {length}")
            vendor, header = struct.unpack_from(">I", data, at + 8)[0], 12
        else:
            vendor, header = 0, 8
        padded = (length + 3) & ~3
        if length < header or at + padded > end:
            raise Garbage(f"AVP {code} length {length}")
        kind = _entry(code, vendor)[0]
        children = None
        if kind is not None and issubclass(kind, AvpGrouped):
            children = parse(data, at + header, at + length)
        found.append(Raw(code, vendor, flags, at + header, at + length, children))
        at += padded
    return tuple(found)


# -- reading ----------------------------------------------------------------------------------


class _Def(NamedTuple):
    code: int
    vendor: int
    type_class: type | None  # the library's class for a grouped AVP's attributes
    is_list: bool


@cache
def _defs(cls: Any) -> dict[str, _Def]:
    """The attributes of a library class (a command or a grouped AVP's), by name. Which are lists
    is what a fresh instance starts with."""
    fresh = cls()
    return {
        d.attr_name: _Def(d.avp_code, d.vendor_id, d.type_class, isinstance(getattr(fresh, d.attr_name, None), list))
        for d in cls.avp_def
    }


class BadValue(Exception):
    """An AVP whose payload is not a value of its type (answered 5004 INVALID_AVP_VALUE)."""

    def __init__(self, raw: Raw, data: bytes) -> None:
        super().__init__(f"AVP {raw.code}: not a value of its type")
        self.avp = raw.avp(data)


_SIZES = {AvpUnsigned32: 4, AvpUnsigned64: 8, AvpInteger32: 4, AvpInteger64: 8}


def _value(raw: Raw, data: bytes) -> Any:
    kind = _entry(raw.code, raw.vendor)[0]
    payload = data[raw.start : raw.end]
    size = next((n for t, n in _SIZES.items() if kind is not None and issubclass(kind, t)), None)
    if size is not None and len(payload) != size:
        raise BadValue(raw, data)
    # The common types read directly; every other one by its library class.
    if kind is AvpUnsigned32 or kind is AvpUnsigned64:
        return int.from_bytes(payload, "big")
    if size is not None:
        return int.from_bytes(payload, "big", signed=True)
    try:
        if kind is AvpUtf8String:
            return payload.decode("utf-8")
        if kind is AvpOctetString:
            return bytes(payload)
        return raw.avp(data).value
    except Exception:  # the library raises assorted errors on bad payloads
        raise BadValue(raw, data) from None


class View:
    """A message or grouped AVP read through the library's class for it: an attribute is decoded
    on first use (None when absent, a list for repeated AVPs, a View for a grouped AVP);
    `header` is the message's header."""

    def __init__(self, cls: type, data: bytes, avps: tuple[Raw, ...], header: MessageHeader | None = None) -> None:
        self._cls, self._data, self._avps = cls, data, avps
        self._by_key: dict[tuple[int, int], list[Raw]] | None = None
        if header is not None:
            self.header = header

    def __getattr__(self, name: str) -> Any:
        found = _defs(self._cls).get(name)
        if found is None or name.startswith("_"):
            raise AttributeError(f"{self._cls.__name__} has no attribute {name}")
        if self._by_key is None:
            self._by_key = {}
            for raw in self._avps:
                self._by_key.setdefault((raw.code, raw.vendor), []).append(raw)
        data, grouped = self._data, found.type_class
        values = [
            View(grouped, data, raw.children or ()) if grouped is not None else _value(raw, data)
            for raw in self._by_key.get((found.code, found.vendor), ())
        ]
        value = values if found.is_list else (values[-1] if values else None)
        setattr(self, name, value)  # read once
        return value


# -- writing ----------------------------------------------------------------------------------


def encode(message: Any) -> bytes:
    """A library message instance as bytes, built from its attributes in `avp_def` order (what the
    library's own encoding gives, with `codec`'s M bits)."""
    body = b"".join(_avps(message))
    header = message.header
    length = HEADER_LENGTH + len(body)
    header.length = length
    return (
        struct.pack(
            ">IIIII",
            (header.version << 24) | length,
            (header.command_flags << 24) | header.command_code,
            header.application_id,
            header.hop_by_hop_identifier,
            header.end_to_end_identifier,
        )
        + body
    )


class _Out(NamedTuple):
    name: str
    flags: int
    vendor: int
    type_class: type | None
    kind: type | None
    code: int


@cache
def _plan(cls: Any) -> tuple[_Out, ...]:
    plan = []
    for d in cls.avp_def:
        kind, mandatory = _entry(d.avp_code, d.vendor_id)
        if d.vendor_id == 0 and d.avp_code in MUST_NOT_M:
            m = False
        elif mandatory is not None:
            m = bool(mandatory)
        else:
            m = bool(d.is_mandatory)
        flags = (VENDOR_BIT if d.vendor_id else 0) | (MANDATORY_BIT if m else 0)
        plan.append(_Out(d.attr_name, flags, d.vendor_id, d.type_class, kind, d.avp_code))
    return tuple(plan)


@cache
def _order(cls: Any) -> dict[str, tuple[int, _Out]]:
    return {step.name: (at, step) for at, step in enumerate(_plan(cls))}


def _avps(obj: Any) -> list[bytes]:
    out = []
    order = _order(obj.__class__)
    # What was set, in `avp_def` order (the library's own __getattr__ scans every definition).
    present = sorted(order[name] for name, value in vars(obj).items() if value is not None and name in order)
    for _, step in present:
        value = getattr(obj, step.name)
        for item in value if isinstance(value, list) else (value,):
            if item is None:
                continue
            payload = b"".join(_avps(item)) if step.type_class is not None else _payload(step, item)
            out.append(_avp(step, payload))
    return out


def _avp(step: _Out, payload: bytes) -> bytes:
    pad = b"\0" * (-len(payload) % 4)
    if step.vendor:
        return struct.pack(">III", step.code, (step.flags << 24) | (12 + len(payload)), step.vendor) + payload + pad
    return struct.pack(">II", step.code, (step.flags << 24) | (8 + len(payload))) + payload + pad


def _payload(step: _Out, value: Any) -> bytes:
    kind = step.kind
    if kind is AvpUnsigned32:
        return struct.pack(">I", value)
    if kind is AvpUnsigned64:
        return struct.pack(">Q", value)
    if kind is AvpUtf8String and isinstance(value, str):
        return value.encode("utf-8")
    if kind is AvpOctetString and isinstance(value, bytes):
        return value
    if kind is not None and issubclass(kind, AvpInteger32) and isinstance(value, int):
        return struct.pack(">i", value)
    return bytes(Avp.new(step.code, step.vendor, value=value).payload)
