"""Validity periods, allowances and plan texts (duckline.catalog.rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from duckline.catalog.rules import Allowance, Unit, Validity, Zone, check_texts
from duckline.core.errors import DomainError, ErrorCode

HKT = ZoneInfo("Asia/Hong_Kong")


def _hkt(*args: int) -> datetime:
    return datetime(*args, tzinfo=HKT)


# --- Validity -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "months"),
    [(0, 0), (30, 1), (-1, 0), (0, -1), (-30, 1), (30, -1)],
)
def test_validity_needs_exactly_one_positive_of_days_or_months(days: int, months: int) -> None:
    with pytest.raises(DomainError) as info:
        Validity(days=days, months=months)
    assert info.value.error is ErrorCode.PLAN_INVALID
    assert info.value.field == "validity"


@pytest.mark.parametrize(("days", "months"), [(1, 0), (30, 0), (0, 1), (0, 12)])
def test_validity_accepts_days_or_months(days: int, months: int) -> None:
    validity = Validity(days=days, months=months)
    assert (validity.days, validity.months) == (days, months)


@pytest.mark.parametrize(
    ("validity", "start", "end"),
    [
        # Month ends clamp to the last day of the shorter month, on the Hong Kong calendar.
        (Validity(months=1), _hkt(2027, 1, 31, 15, 0), _hkt(2027, 2, 28, 15, 0)),
        (Validity(months=1), _hkt(2028, 1, 31, 15, 0), _hkt(2028, 2, 29, 15, 0)),  # leap year
        (Validity(months=12), _hkt(2028, 2, 29, 9, 0), _hkt(2029, 2, 28, 9, 0)),
        (Validity(months=1), _hkt(2027, 3, 31, 23, 59), _hkt(2027, 4, 30, 23, 59)),
        (Validity(months=1), _hkt(2027, 12, 15, 8, 0), _hkt(2028, 1, 15, 8, 0)),  # across a year
        (Validity(months=3), _hkt(2027, 11, 30, 12, 0), _hkt(2028, 2, 29, 12, 0)),
        # Days are whole days, crossing month ends and the leap day.
        (Validity(days=30), _hkt(2027, 1, 20, 10, 0), _hkt(2027, 2, 19, 10, 0)),
        (Validity(days=30), _hkt(2028, 2, 15, 10, 0), _hkt(2028, 3, 16, 10, 0)),
        (Validity(days=1), _hkt(2027, 12, 31, 23, 30), _hkt(2028, 1, 1, 23, 30)),
    ],
)
def test_end_of_period(validity: Validity, start: datetime, end: datetime) -> None:
    result = validity.end_of_period(start)
    assert result == end
    assert result.tzinfo is UTC
    assert result.astimezone(HKT).replace(tzinfo=None) == end.replace(tzinfo=None)


def test_end_of_period_is_aware_utc_for_a_utc_start() -> None:
    result = Validity(days=7).end_of_period(datetime(2027, 5, 1, 4, 0, tzinfo=UTC))
    assert result.tzinfo is UTC
    assert result == datetime(2027, 5, 8, 4, 0, tzinfo=UTC)


def test_month_is_counted_on_the_hong_kong_calendar_not_utc() -> None:
    # 00:30 HKT on 31 Jan is still 30 Jan in UTC. One month later must be the end of February in
    # Hong Kong (28 Feb 00:30 HKT = 27 Feb 16:30 UTC), not 30 Jan UTC + 1 month = 28 Feb 16:30 UTC.
    start = datetime(2027, 1, 30, 16, 30, tzinfo=UTC)
    assert start.astimezone(HKT) == _hkt(2027, 1, 31, 0, 30)
    end = Validity(months=1).end_of_period(start)
    assert end == datetime(2027, 2, 27, 16, 30, tzinfo=UTC)
    assert end.astimezone(HKT).date().isoformat() == "2027-02-28"


def test_end_of_period_depends_on_the_instant_not_the_given_offset() -> None:
    instant = _hkt(2027, 1, 31, 0, 30)
    same_instant_elsewhere = instant.astimezone(ZoneInfo("America/New_York"))
    validity = Validity(months=1)
    assert validity.end_of_period(same_instant_elsewhere) == validity.end_of_period(instant)


def test_end_of_period_keeps_local_time_across_a_dst_change_in_another_zone() -> None:
    # In London 30 days from noon on 1 Mar 2027 (GMT) is noon on 31 Mar (BST), i.e. 11:00 UTC.
    start = datetime(2027, 3, 1, 12, 0, tzinfo=ZoneInfo("Europe/London"))
    end = Validity(days=30).end_of_period(start, tz="Europe/London")
    assert end == datetime(2027, 3, 31, 11, 0, tzinfo=UTC)
    assert end - start == timedelta(days=30) - timedelta(hours=1)


# --- Allowance ----------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, -1024])
def test_allowance_amount_must_be_positive(amount: int) -> None:
    with pytest.raises(DomainError) as info:
        Allowance(Unit.DATA_BYTES, Zone.HK, amount)
    assert info.value.error is ErrorCode.PLAN_INVALID
    assert info.value.field == "allowances"


@pytest.mark.parametrize("amount", [1, 100, 10 * 1024**3])
def test_allowance_positive_amount_accepted(amount: int) -> None:
    assert Allowance(Unit.SMS, Zone.MAINLAND, amount).amount == amount


# --- Texts --------------------------------------------------------------------------------------

TEXTS = {"en": "Local 30", "zh_Hant": "本地 30", "zh_Hans": "本地 30"}


def test_check_texts_strips_and_keeps_only_the_three_languages() -> None:
    given = {"en": "  Local 30 ", "zh_Hant": "本地 30\n", "zh_Hans": "\t本地 30", "fr": "Local"}
    assert check_texts(given, "name") == TEXTS


@pytest.mark.parametrize("missing", ["en", "zh_Hant", "zh_Hans"])
def test_check_texts_each_language_required(missing: str) -> None:
    texts = {lang: text for lang, text in TEXTS.items() if lang != missing}
    with pytest.raises(DomainError) as info:
        check_texts(texts, "description")
    assert info.value.error is ErrorCode.PLAN_INVALID
    assert info.value.field == "description"
    assert info.value.params["reason"] == f"missing {missing}"


@pytest.mark.parametrize("blank", ["", "   ", "\n"])
def test_check_texts_blank_counts_as_missing(blank: str) -> None:
    with pytest.raises(DomainError) as info:
        check_texts({**TEXTS, "zh_Hans": blank}, "name")
    assert info.value.params["reason"] == "missing zh_Hans"


def test_check_texts_lists_every_missing_language() -> None:
    with pytest.raises(DomainError) as info:
        check_texts({"en": "Local 30", "zh": "本地 30"}, "name")
    assert info.value.params["reason"] == "missing zh_Hant, zh_Hans"
    assert "missing zh_Hant, zh_Hans" in str(info.value)
