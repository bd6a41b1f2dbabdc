"""Drawing usage from balance buckets (duckline.usage.drawing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from duckline.catalog.rules import Unit, Zone
from duckline.usage.drawing import Bucket, Draw, draw

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def bucket(
    id: int,
    remaining: int,
    *,
    unit: Unit = Unit.DATA_BYTES,
    zone: Zone = Zone.HK,
    valid_from: datetime = NOW - 10 * DAY,
    valid_until: datetime = NOW + 20 * DAY,
) -> Bucket:
    return Bucket(id, unit, zone, remaining, valid_from, valid_until)


def test_draw_partially_from_one_bucket() -> None:
    b = bucket(1, 1000)
    draws, overage = draw([b], Unit.DATA_BYTES, Zone.HK, 300, NOW)
    assert draws == [Draw(1, 300)]
    assert overage == 0
    assert b.remaining == 700


def test_draw_exactly_empties_a_bucket() -> None:
    b = bucket(1, 300)
    assert draw([b], Unit.DATA_BYTES, Zone.HK, 300, NOW) == ([Draw(1, 300)], 0)
    assert b.remaining == 0


def test_soonest_expiring_bucket_goes_first() -> None:
    later = bucket(1, 500, valid_until=NOW + 30 * DAY)
    sooner = bucket(2, 500, valid_until=NOW + 2 * DAY)
    draws, overage = draw([later, sooner], Unit.DATA_BYTES, Zone.HK, 700, NOW)
    assert draws == [Draw(2, 500), Draw(1, 200)]
    assert overage == 0
    assert (sooner.remaining, later.remaining) == (0, 300)


def test_soonest_expiring_wins_even_if_newer() -> None:
    # An add-on (higher id, newer) that expires sooner than the plan is used before the plan.
    plan = bucket(1, 500, valid_until=NOW + 20 * DAY)
    addon = bucket(9, 100, valid_until=NOW + 1 * DAY)
    draws, _ = draw([plan, addon], Unit.DATA_BYTES, Zone.HK, 50, NOW)
    assert draws == [Draw(9, 50)]
    assert plan.remaining == 500


def test_ties_on_expiry_go_to_the_lower_id_whatever_the_list_order() -> None:
    b7 = bucket(7, 100)
    b3 = bucket(3, 100)
    draws, overage = draw([b7, b3], Unit.DATA_BYTES, Zone.HK, 150, NOW)
    assert draws == [Draw(3, 100), Draw(7, 50)]
    assert overage == 0
    assert (b3.remaining, b7.remaining) == (0, 50)


def test_only_same_unit_and_zone_are_drawn() -> None:
    other_unit = bucket(1, 1000, unit=Unit.SMS, valid_until=NOW + DAY)
    other_zone = bucket(2, 1000, zone=Zone.MAINLAND, valid_until=NOW + DAY)
    macau_voice = bucket(3, 1000, unit=Unit.VOICE_SECONDS, zone=Zone.MACAU, valid_until=NOW + DAY)
    match = bucket(4, 1000)
    draws, overage = draw([other_unit, other_zone, macau_voice, match], Unit.DATA_BYTES, Zone.HK, 400, NOW)
    assert draws == [Draw(4, 400)]
    assert overage == 0
    assert [b.remaining for b in (other_unit, other_zone, macau_voice, match)] == [1000, 1000, 1000, 600]


def test_no_matching_bucket_is_all_overage() -> None:
    sms = bucket(1, 1000, unit=Unit.SMS)
    assert draw([sms], Unit.DATA_BYTES, Zone.HK, 400, NOW) == ([], 400)
    assert draw([], Unit.DATA_BYTES, Zone.HK, 400, NOW) == ([], 400)
    assert sms.remaining == 1000


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "usable"),
    [
        (NOW, NOW + DAY, True),  # starts exactly now: usable
        (NOW + timedelta(seconds=1), NOW + DAY, False),  # not started yet
        (NOW - DAY, NOW, False),  # expires exactly now: not usable
        (NOW - DAY, NOW - timedelta(seconds=1), False),  # already expired
        (NOW - DAY, NOW + timedelta(seconds=1), True),  # one second left
    ],
)
def test_only_buckets_valid_at_the_usage_time_are_drawn(
    valid_from: datetime, valid_until: datetime, usable: bool
) -> None:
    b = bucket(1, 100, valid_from=valid_from, valid_until=valid_until)
    draws, overage = draw([b], Unit.DATA_BYTES, Zone.HK, 60, NOW)
    if usable:
        assert (draws, overage, b.remaining) == ([Draw(1, 60)], 0, 40)
    else:
        assert (draws, overage, b.remaining) == ([], 60, 100)


def test_usage_time_not_wall_clock_decides_validity() -> None:
    # A record that arrives late is charged against the buckets that were valid when it happened.
    old = bucket(1, 100, valid_from=NOW - 30 * DAY, valid_until=NOW - 10 * DAY)
    current = bucket(2, 100, valid_from=NOW - 10 * DAY, valid_until=NOW + 20 * DAY)
    draws, _ = draw([old, current], Unit.DATA_BYTES, Zone.HK, 10, NOW - 15 * DAY)
    assert draws == [Draw(1, 10)]
    assert current.remaining == 100


def test_overage_when_buckets_run_out() -> None:
    a = bucket(1, 100, valid_until=NOW + DAY)
    b = bucket(2, 50, valid_until=NOW + 2 * DAY)
    draws, overage = draw([a, b], Unit.DATA_BYTES, Zone.HK, 400, NOW)
    assert draws == [Draw(1, 100), Draw(2, 50)]
    assert overage == 250
    assert (a.remaining, b.remaining) == (0, 0)


def test_empty_buckets_are_skipped_without_zero_draws() -> None:
    empty = bucket(1, 0, valid_until=NOW + DAY)
    full = bucket(2, 100)
    draws, overage = draw([empty, full], Unit.DATA_BYTES, Zone.HK, 30, NOW)
    assert draws == [Draw(2, 30)]
    assert overage == 0
    assert empty.remaining == 0


def test_zero_quantity_draws_nothing() -> None:
    b = bucket(1, 100)
    assert draw([b], Unit.DATA_BYTES, Zone.HK, 0, NOW) == ([], 0)
    assert b.remaining == 100


def test_later_buckets_untouched_once_quantity_is_covered() -> None:
    a = bucket(1, 100, valid_until=NOW + DAY)
    b = bucket(2, 100, valid_until=NOW + 2 * DAY)
    draws, _ = draw([a, b], Unit.DATA_BYTES, Zone.HK, 100, NOW)
    assert draws == [Draw(1, 100)]
    assert b.remaining == 100


@pytest.mark.parametrize("quantity", [0, 1, 99, 100, 101, 249, 250, 251, 10_000])
def test_draws_add_up_and_remaining_never_negative(quantity: int) -> None:
    buckets = [
        bucket(1, 100, valid_until=NOW + 3 * DAY),
        bucket(2, 100, valid_until=NOW + DAY),
        bucket(3, 50, valid_until=NOW + 2 * DAY),
        bucket(4, 500, unit=Unit.SMS),
    ]
    before = {b.id: b.remaining for b in buckets}
    draws, overage = draw(buckets, Unit.DATA_BYTES, Zone.HK, quantity, NOW)
    assert sum(d.amount for d in draws) + overage == quantity
    assert overage == max(0, quantity - 250)
    assert all(d.amount > 0 for d in draws)
    assert all(b.remaining >= 0 for b in buckets)
    for b in buckets:
        taken = sum(d.amount for d in draws if d.bucket_id == b.id)
        assert b.remaining == before[b.id] - taken
    # Soonest expiry first: 2 (1 day), then 3 (2 days), then 1 (3 days).
    assert [d.bucket_id for d in draws] == [2, 3, 1][: len(draws)]


def test_buckets_are_mutated_in_place_and_a_second_draw_sees_the_change() -> None:
    buckets = [bucket(1, 100)]
    original = buckets[0]
    draw(buckets, Unit.DATA_BYTES, Zone.HK, 70, NOW)
    assert buckets[0] is original
    assert original.remaining == 30
    assert draw(buckets, Unit.DATA_BYTES, Zone.HK, 70, NOW) == ([Draw(1, 30)], 40)
    assert original.remaining == 0
