"""Injected clocks (duckline.core.clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from duckline.core.clock import FrozenClock, SystemClock, as_utc

HKT = ZoneInfo("Asia/Hong_Kong")


def test_frozen_clock_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        FrozenClock(datetime(2027, 1, 1, 12, 0))


def test_frozen_clock_stands_still_and_reports_utc() -> None:
    clock = FrozenClock(datetime(2027, 1, 1, 20, 0, tzinfo=HKT))
    assert clock.now() == datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    assert clock.now() == clock.now()


def test_frozen_clock_advance() -> None:
    clock = FrozenClock(datetime(2027, 1, 31, 23, 0, tzinfo=UTC))
    clock.advance(timedelta(hours=2))
    assert clock.now() == datetime(2027, 2, 1, 1, 0, tzinfo=UTC)
    clock.advance(timedelta(days=30))
    assert clock.now() == datetime(2027, 3, 3, 1, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_frozen_clock_set_converts_to_utc() -> None:
    clock = FrozenClock(datetime(2027, 1, 1, tzinfo=UTC))
    clock.set(datetime(2027, 6, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))))
    assert clock.now() == datetime(2027, 6, 1, 0, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_frozen_clock_set_rejects_naive_datetime() -> None:
    clock = FrozenClock(datetime(2027, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        clock.set(datetime(2027, 6, 1, 8, 0))


def test_system_clock_is_aware_utc_and_current() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)


def test_as_utc_treats_naive_as_utc_and_converts_aware() -> None:
    assert as_utc(datetime(2027, 1, 1, 12, 0)) == datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    assert as_utc(datetime(2027, 1, 1, 20, 0, tzinfo=HKT)) == datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    assert as_utc(datetime(2027, 1, 1, 20, 0, tzinfo=HKT)).tzinfo is UTC
