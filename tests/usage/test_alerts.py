"""Usage and expiry warnings (duckline.usage.alerts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from duckline.usage.alerts import ExpiryWarning, UsageWarning, expiry_warning, usage_warning, used_percent

THRESHOLDS = (75, 90, 100)
OFFSETS = (1, 3, 7)
NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("initial", "remaining", "percent"),
    [
        (100, 100, 0),
        (100, 0, 100),
        (100, 25, 75),
        (10_000, 1_001, 89),  # 89.99 % is floored, not rounded to 90
        (10_000, 1_000, 90),
        (3, 2, 33),  # 33.3 %
        (3, 1, 66),  # 66.7 % floors to 66
        (10 * 1024**3, 1, 99),  # one byte left of 10 GiB is still not 100 %
        (0, 0, 0),  # no allowance at all: nothing used
        (-5, 0, 0),
    ],
)
def test_used_percent_floors(initial: int, remaining: int, percent: int) -> None:
    assert used_percent(initial, remaining) == percent


@pytest.mark.parametrize(
    ("initial", "remaining", "threshold", "percent"),
    [
        (1000, 251, None, 74),
        (1000, 250, 75, 75),
        (10_000, 1_001, 75, 89),
        (1000, 100, 90, 90),
        (1000, 1, 90, 99),
        (1000, 0, 100, 100),
        (1000, 1000, None, 0),
        (0, 0, None, 0),
    ],
)
def test_usage_warning_is_the_highest_crossed_threshold(
    initial: int, remaining: int, threshold: int | None, percent: int
) -> None:
    warning = usage_warning("data_bytes", "HK", initial, remaining, THRESHOLDS)
    if threshold is None:
        assert warning is None
    else:
        assert warning == UsageWarning("data_bytes", "HK", threshold, percent)


def test_usage_warning_does_not_depend_on_threshold_order() -> None:
    warning = usage_warning("sms", "CN", 100, 5, (100, 75, 90))
    assert warning == UsageWarning("sms", "CN", 90, 95)


def test_usage_warning_with_no_thresholds_is_none() -> None:
    assert usage_warning("sms", "CN", 100, 0, ()) is None


@pytest.mark.parametrize(
    ("left", "days"),
    [
        (timedelta(seconds=1), 1),
        (timedelta(hours=23), 1),
        (timedelta(days=1), 1),  # exactly on the offset counts as within it
        (timedelta(days=1, seconds=1), 3),
        (timedelta(days=2, hours=12), 3),
        (timedelta(days=3), 3),
        (timedelta(days=3, seconds=1), 7),
        (timedelta(days=7), 7),
        (timedelta(days=7, seconds=1), None),  # too far away
        (timedelta(days=30), None),
        (timedelta(0), None),  # expires now: already expired
        (-timedelta(days=1), None),  # already expired
    ],
)
def test_expiry_warning_picks_the_smallest_window(left: timedelta, days: int | None) -> None:
    expires_at = NOW + left
    warning = expiry_warning(expires_at, NOW, OFFSETS)
    if days is None:
        assert warning is None
    else:
        assert warning == ExpiryWarning(days, expires_at)


def test_expiry_warning_does_not_depend_on_offset_order() -> None:
    expires_at = NOW + timedelta(days=2)
    assert expiry_warning(expires_at, NOW, (7, 1, 3)) == ExpiryWarning(3, expires_at)
