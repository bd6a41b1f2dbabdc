"""The rules of rating a call: charging increments over a whole call, grants in whole blocks, the
zone of a called number and emergency numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duckline.catalog.rules import Zone
from duckline.catalog.voice_rating import Increments, is_emergency, number_of, zone_of

PER_MINUTE, PER_SECOND = Increments(60, 60), Increments(1, 1)
increments = st.builds(Increments, st.integers(1, 600), st.integers(1, 600))
seconds = st.integers(0, 20_000)


@pytest.mark.parametrize(
    ("plan", "used", "charged"),
    [
        (PER_MINUTE, 0, 0),
        (PER_MINUTE, 1, 60),
        (PER_MINUTE, 60, 60),
        (PER_MINUTE, 61, 120),
        (PER_SECOND, 61, 61),
        (Increments(30, 6), 31, 36),
        (Increments(30, 6), 29, 30),
    ],
)
def test_a_call_is_charged_its_first_block_then_every_block_it_enters(
    plan: Increments, used: int, charged: int
) -> None:
    assert plan.charged(used) == charged


def test_a_call_reported_in_pieces_is_charged_as_a_whole() -> None:
    # 30 s, then 30 s, then 1 s: 61 s in all, two started minutes, not three.
    assert [PER_MINUTE.charge(0, 30), PER_MINUTE.charge(30, 30), PER_MINUTE.charge(60, 1)] == [60, 0, 60]


@given(increments, st.lists(st.integers(0, 2000), max_size=8))
def test_reports_add_up_to_what_the_whole_call_costs(plan: Increments, reports: list[int]) -> None:
    used = 0
    total = 0
    for report in reports:
        total += plan.charge(used, report)
        used += report
    assert total == plan.charged(used)
    assert used <= total < used + max(plan.initial, plan.subsequent)


@given(increments, seconds, seconds, seconds)
def test_a_grant_is_whole_blocks_and_costs_no_more_than_is_left(
    plan: Increments, used: int, wanted: int, available: int
) -> None:
    granted, cost = plan.grant(used, wanted, available)
    assert 0 <= cost <= available
    # Using the whole grant costs exactly what it reserved: it ends on a block boundary.
    assert plan.charge(used, granted) == cost
    assert plan.charged(used + granted) == used + granted or granted == 0 == cost
    asked = max(wanted, 1)  # nothing asked: a block all the same
    if available >= plan.charge(used, asked):  # the balance pays for what was asked: at least that
        assert granted >= asked
    else:  # as much as it pays for: one more block would cost more than is left
        assert plan.charge(used, granted + 1) > available or granted + 1 > asked


def test_a_grant_rounds_up_to_the_block_and_down_to_the_balance() -> None:
    assert PER_MINUTE.grant(0, 30, 6000) == (60, 60)  # asked half a minute: a whole one
    assert PER_MINUTE.grant(0, 300, 250) == (240, 240)  # four minutes is all that is paid for
    assert PER_MINUTE.grant(0, 300, 59) == (0, 0)  # not even the first minute
    assert PER_MINUTE.grant(30, 300, 0) == (30, 0)  # the rest of a minute already paid for
    assert PER_SECOND.grant(0, 300, 42) == (42, 42)


@pytest.mark.parametrize("bad", [(0, 1), (1, 0), (3601, 60)])
def test_increments_are_whole_seconds_of_at_most_an_hour(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="increments"):
        Increments(*bad)


@pytest.mark.parametrize(
    ("address", "number"),
    [
        ("tel:+85291234567", "+85291234567"),
        ("sip:+8613800138000@ims.mnc000.mcc454.3gppnetwork.org;user=phone", "+8613800138000"),
        ("sips:+853-6612-3456@example.net", "+85366123456"),
        ("TEL:+1 (415) 555-0100", "+14155550100"),
        ("sip:91234567@ims.example;user=phone", "91234567"),
        ("999", "999"),
        ("sip:alice@example.net", None),
        ("", None),
        (None, None),
    ],
)
def test_the_number_in_a_called_party_address(address: str | None, number: str | None) -> None:
    assert number_of(address) == number


@pytest.mark.parametrize(
    ("number", "zone"),
    [
        ("+85291234567", Zone.HK),
        ("91234567", Zone.HK),  # dialled without "+": a Hong Kong number
        ("+8613800138000", Zone.MAINLAND),
        ("+861012345678", Zone.MAINLAND),  # a Beijing fixed line
        ("+85366123456", Zone.MACAU),
        ("+14155550100", Zone.INTERNATIONAL),
        ("+447911123456", Zone.INTERNATIONAL),
        ("+999123", Zone.INTERNATIONAL),  # no such country: never a home call
    ],
)
def test_a_number_is_in_the_zone_of_its_country(number: str, zone: Zone) -> None:
    assert zone_of(number) is zone


@pytest.mark.parametrize(
    ("number", "emergency"),
    [("999", True), ("112", True), ("+852999", True), ("+852112", True), ("+86999", False), ("9999", False)],
)
def test_emergency_numbers_as_dialled_and_in_their_hong_kong_form(number: str, emergency: bool) -> None:
    assert is_emergency(number, ("999", "112", "911")) is emergency
