"""Rating a call: the zone of the number called, emergency numbers, and a plan's charging
increments (pure rules; online charging applies them).

Increments: a plan charges voice in whole blocks, an initial one then subsequent ones (60/60:
the first minute, then per minute; 1/1: per second). They apply to a whole call (a credit-control
session), not to each report: what a call has used so far is charged as `charged(total)`, so a
report that stops mid-block is not rounded again by the next one. A grant is whole blocks too,
so what the element uses up to its grant is charged exactly what was reserved.

Zones: Hong Kong (+852), the Mainland (+86), Macau (+853); any other country is international.
Numbers are read with `phonenumbers`; a number without "+" is dialled as in Hong Kong.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers

from duckline.catalog.rules import Zone

ZONES_BY_REGION = {"HK": Zone.HK, "CN": Zone.MAINLAND, "MO": Zone.MACAU}
ZONES_BY_COUNTRY_CODE = {852: Zone.HK, 86: Zone.MAINLAND, 853: Zone.MACAU}
HOME_REGION = "HK"  # how a number dialled without "+" is read
MAX_INCREMENT = 3600  # an hour: a block longer than that is a typing mistake


@dataclass(frozen=True)
class Increments:
    """A plan's charging increments in seconds: the first block of a call, then every later one."""

    initial: int = 1
    subsequent: int = 1

    def __post_init__(self) -> None:
        if not (1 <= self.initial <= MAX_INCREMENT and 1 <= self.subsequent <= MAX_INCREMENT):
            raise ValueError(f"increments must be 1..{MAX_INCREMENT} seconds")

    def charged(self, used: int) -> int:
        """What a call that has used `used` seconds in all is charged: the initial block as soon as
        it starts, then every subsequent block it enters."""
        if used < 0:
            raise ValueError("seconds used are never negative")
        if used == 0:
            return 0
        if used <= self.initial:
            return self.initial
        return self.initial + _round_up(used - self.initial, self.subsequent)

    def charge(self, used_before: int, used_now: int) -> int:
        """What a report of `used_now` seconds adds, for a call that had used `used_before`."""
        return self.charged(used_before + used_now) - self.charged(used_before)

    def grant(self, used_before: int, wanted: int, available: int) -> tuple[int, int]:
        """(seconds granted, seconds that grant costs) for a call that has used `used_before`,
        asking `wanted` with `available` left in its buckets: whole blocks (up to the block
        boundary at or after `wanted`) as far as `available` pays for them. Seconds already paid
        for (the rest of a block a report stopped in) are granted at no cost."""
        if min(used_before, wanted, available) < 0:
            raise ValueError("seconds are never negative")
        paid = self.charged(used_before)  # a block boundary (or 0)
        target = self._boundary_at_or_after(used_before + max(wanted, 1))
        affordable = self._boundary_at_or_before(paid + available)
        end = max(min(target, affordable), paid)
        return end - used_before, end - paid

    def _boundary_at_or_after(self, seconds: int) -> int:
        return self.charged(seconds)

    def _boundary_at_or_before(self, seconds: int) -> int:
        if seconds < self.initial:
            return 0
        return self.initial + (seconds - self.initial) // self.subsequent * self.subsequent


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


_URI = re.compile(r"^(?:tel|sips?):", re.IGNORECASE)
_VISUAL = re.compile(r"[\s\-.()]")


def number_of(address: str | None) -> str | None:
    """The dialled number in a Called-Party-Address (tel:+85291234567, sip:+8529…@ims;user=phone,
    or the bare number): "+" and digits, or digits alone as dialled; None when it holds none."""
    if not address:
        return None
    text = _URI.sub("", address.strip())
    text = text.split("@", 1)[0].split(";", 1)[0]  # a SIP URI's user part, without parameters
    text = _VISUAL.sub("", text)
    if text.startswith("+") and text[1:].isdigit():
        return text
    return text if text.isdigit() else None


def zone_of(number: str) -> Zone:
    """The zone of a dialled number: by its country, read as dialled in Hong Kong when it has no
    "+". A number `phonenumbers` cannot read at all is international (never a free home call)."""
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else HOME_REGION)
    except phonenumbers.NumberParseException:
        return Zone.INTERNATIONAL
    region = phonenumbers.region_code_for_number(parsed)
    zone = ZONES_BY_REGION.get(region or "")
    if zone is None:  # a number no region claims yet: its country code still says where it goes
        zone = ZONES_BY_COUNTRY_CODE.get(parsed.country_code or 0)
    return zone or Zone.INTERNATIONAL


def is_emergency(number: str | None, emergency_numbers: Iterable[str]) -> bool:
    """Whether a dialled number is one of the emergency numbers, as dialled (999) or in its
    international form (+852999)."""
    if not number:
        return False
    wanted = {n.strip() for n in emergency_numbers}
    if number in wanted:
        return True
    home = str(phonenumbers.country_code_for_region(HOME_REGION))
    return number.startswith("+" + home) and number[1 + len(home) :] in wanted
