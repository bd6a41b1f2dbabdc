"""Pure renewal rules: when a bought period starts and ends (billing/renewal.py), and what it
costs once promotions are stacked (billing/pricing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from duckline.billing.order_states import OrderKind
from duckline.billing.pricing import PromotionKind, PromotionRule, price
from duckline.billing.renewal import Term, next_term, order_kind
from duckline.catalog.rules import Allowance, Unit, Validity, Zone
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money
from duckline.lines.states import LineStatus

HK = ZoneInfo("Asia/Hong_Kong")
TZ = "Asia/Hong_Kong"
NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Hong Kong
MONTH = Validity(months=1)
DAYS_30 = Validity(days=30)


def hkt(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A Hong Kong wall-clock time, as the UTC instant the code works in."""
    return datetime(year, month, day, hour, minute, tzinfo=HK).astimezone(UTC)


# --- next_term ----------------------------------------------------------------------------------


def test_an_active_line_is_extended_from_its_expiry() -> None:
    expiry = NOW + timedelta(days=10)
    term = next_term(OrderKind.RENEWAL, LineStatus.ACTIVE, expiry, NOW, DAYS_30, TZ)
    assert term == Term(start=expiry, end=expiry + timedelta(days=30), reactivates=False)


def test_a_plan_change_on_an_active_line_also_starts_at_the_expiry() -> None:
    expiry = NOW + timedelta(days=3)
    term = next_term(OrderKind.CHANGE, LineStatus.ACTIVE, expiry, NOW, MONTH, TZ)
    assert term.start == expiry and term.end == hkt(2026, 12, 27, 10, 0) and not term.reactivates


@pytest.mark.parametrize("status", [LineStatus.GRACE, LineStatus.EXPIRED])
def test_a_lapsed_line_restarts_from_now_and_is_reactivated(status: LineStatus) -> None:
    expiry = NOW - timedelta(days=5)
    term = next_term(OrderKind.RENEWAL, status, expiry, NOW, DAYS_30, TZ)
    assert term == Term(start=NOW, end=NOW + timedelta(days=30), reactivates=True)


def test_a_pending_line_starts_its_first_period_now() -> None:
    term = next_term(OrderKind.ACTIVATION, LineStatus.PENDING, None, NOW, MONTH, TZ)
    assert term == Term(start=NOW, end=hkt(2026, 12, 24, 10, 0), reactivates=True)


def test_an_active_line_whose_expiry_has_passed_restarts_from_now() -> None:
    """Lifecycle has not yet moved it to grace: no days are 'in the past' to extend from."""
    term = next_term(OrderKind.RENEWAL, LineStatus.ACTIVE, NOW - timedelta(hours=1), NOW, DAYS_30, TZ)
    assert term.start == NOW and term.end == NOW + timedelta(days=30)


@pytest.mark.parametrize("kind", [OrderKind.RENEWAL, OrderKind.CHANGE, OrderKind.ADDON])
def test_a_recycled_number_cannot_be_renewed(kind: OrderKind) -> None:
    with pytest.raises(DomainError) as raised:
        next_term(kind, LineStatus.RECYCLED, NOW - timedelta(days=100), NOW, DAYS_30, TZ)
    assert raised.value.error is ErrorCode.LINE_RECYCLED


@pytest.mark.parametrize("kind", [OrderKind.RENEWAL, OrderKind.CHANGE, OrderKind.ADDON])
def test_a_suspended_line_is_not_renewable(kind: OrderKind) -> None:
    with pytest.raises(DomainError) as raised:
        next_term(kind, LineStatus.SUSPENDED, NOW + timedelta(days=10), NOW, DAYS_30, TZ)
    assert raised.value.error is ErrorCode.LINE_NOT_RENEWABLE


def test_an_addon_is_valid_until_the_current_expiry_and_never_moves_it() -> None:
    expiry = NOW + timedelta(days=12)
    term = next_term(OrderKind.ADDON, LineStatus.ACTIVE, expiry, NOW, DAYS_30, TZ)
    assert term == Term(start=NOW, end=expiry, reactivates=False)


@pytest.mark.parametrize(
    ("status", "expires_at"),
    [
        (LineStatus.PENDING, None),
        (LineStatus.GRACE, NOW - timedelta(days=1)),
        (LineStatus.EXPIRED, NOW - timedelta(days=40)),
        (LineStatus.ACTIVE, None),
        (LineStatus.ACTIVE, NOW),  # expires this instant: nothing left to top up
        (LineStatus.ACTIVE, NOW - timedelta(seconds=1)),
    ],
)
def test_an_addon_needs_a_live_active_line(status: LineStatus, expires_at: datetime | None) -> None:
    with pytest.raises(DomainError) as raised:
        next_term(OrderKind.ADDON, status, expires_at, NOW, DAYS_30, TZ)
    assert raised.value.error is ErrorCode.ADDON_NEEDS_ACTIVE_LINE


# --- calendar months on the Hong Kong calendar ---------------------------------------------------


def test_month_from_utc_31_jan_that_is_already_1_feb_in_hong_kong() -> None:
    """31 Jan 2027 16:00 UTC is 1 Feb 00:00 HKT: one month on is 1 Mar 00:00 HKT, not 28 Feb."""
    expiry = datetime(2027, 1, 31, 16, 0, tzinfo=UTC)
    now = expiry - timedelta(days=3)
    term = next_term(OrderKind.RENEWAL, LineStatus.ACTIVE, expiry, now, MONTH, TZ)
    assert term.start == expiry
    assert term.end == datetime(2027, 2, 28, 16, 0, tzinfo=UTC)
    assert term.end.astimezone(HK).replace(tzinfo=None) == datetime(2027, 3, 1, 0, 0)


def test_month_from_31_jan_hong_kong_ends_on_the_last_day_of_february() -> None:
    expiry = hkt(2027, 1, 31, 10, 0)
    term = next_term(OrderKind.RENEWAL, LineStatus.ACTIVE, expiry, expiry - timedelta(days=1), MONTH, TZ)
    assert term.end == hkt(2027, 2, 28, 10, 0) == datetime(2027, 2, 28, 2, 0, tzinfo=UTC)


def test_month_from_leap_day() -> None:
    start = hkt(2028, 2, 29, 15, 0)
    assert MONTH.end_of_period(start, TZ) == hkt(2028, 3, 29, 15, 0)
    term = next_term(OrderKind.ACTIVATION, LineStatus.PENDING, None, start, MONTH, TZ)
    assert term.end == hkt(2028, 3, 29, 15, 0)


def test_twelve_months_from_leap_day_ends_on_28_feb() -> None:
    start = hkt(2028, 2, 29, 15, 0)
    term = next_term(OrderKind.ACTIVATION, LineStatus.PENDING, None, start, Validity(months=12), TZ)
    assert term.end == hkt(2029, 2, 28, 15, 0)


def test_twelve_months_keep_the_hong_kong_time_of_day() -> None:
    expiry = hkt(2027, 1, 31, 23, 30)  # 15:30 UTC, the same UTC date
    term = next_term(OrderKind.RENEWAL, LineStatus.ACTIVE, expiry, expiry - timedelta(days=1), Validity(months=12), TZ)
    assert term.end == hkt(2028, 1, 31, 23, 30)


def test_day_validity_counts_whole_days() -> None:
    start = hkt(2027, 2, 27, 9, 0)
    assert next_term(OrderKind.ACTIVATION, LineStatus.PENDING, None, start, DAYS_30, TZ).end == hkt(2027, 3, 29, 9, 0)


# --- order_kind ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "current_plan", "plan", "is_addon", "expected"),
    [
        (LineStatus.PENDING, None, 1, False, OrderKind.ACTIVATION),
        (LineStatus.PENDING, 1, 1, False, OrderKind.ACTIVATION),  # staff-assigned plan, never started
        (LineStatus.ACTIVE, None, 1, False, OrderKind.ACTIVATION),
        (LineStatus.ACTIVE, 1, 1, False, OrderKind.RENEWAL),
        (LineStatus.GRACE, 1, 1, False, OrderKind.RENEWAL),
        (LineStatus.EXPIRED, 1, 1, False, OrderKind.RENEWAL),
        (LineStatus.ACTIVE, 1, 2, False, OrderKind.CHANGE),
        (LineStatus.GRACE, 1, 2, False, OrderKind.CHANGE),
        (LineStatus.ACTIVE, 1, 3, True, OrderKind.ADDON),
        (LineStatus.PENDING, None, 3, True, OrderKind.ADDON),
    ],
)
def test_order_kind(
    status: LineStatus, current_plan: int | None, plan: int, is_addon: bool, expected: OrderKind
) -> None:
    assert order_kind(status, current_plan, plan, is_addon) is expected


# --- pricing: the stacking rules -----------------------------------------------------------------

HKD = "HKD"
DATA = Allowance(Unit.DATA_BYTES, Zone.HK, 1_000_000)
VOICE = Allowance(Unit.VOICE_SECONDS, Zone.HK, 600)


def percent(pid: int, off: int, **kw: object) -> PromotionRule:
    return PromotionRule(id=pid, name=f"{off}% off", kind=PromotionKind.PERCENT_OFF, percent_off=off, **kw)  # type: ignore[arg-type]


def amount(pid: int, off: int, **kw: object) -> PromotionRule:
    return PromotionRule(id=pid, name=f"{off} off", kind=PromotionKind.AMOUNT_OFF, amount_off=off, **kw)  # type: ignore[arg-type]


def bonus(pid: int, *gifts: Allowance, **kw: object) -> PromotionRule:
    return PromotionRule(id=pid, name="bonus", kind=PromotionKind.BONUS, bonus=gifts, **kw)  # type: ignore[arg-type]


def priced(
    list_amount: int,
    automatic: list[PromotionRule] | None = None,
    code: PromotionRule | None = None,
    plan: str = "monthly",
    now: datetime = NOW,
    first_renewal: bool = False,
) -> tuple[int, list[tuple[int, int]]]:
    result = price(Money(list_amount, HKD), plan, automatic or [], code, now, first_renewal)
    return result.total.amount, [(a.promotion_id, a.amount) for a in result.adjustments]


def test_no_promotion_the_list_price() -> None:
    result = price(Money(8800, HKD), "monthly", [], None, NOW, False)
    assert result.total == Money(8800, HKD) and result.discount == 0 and result.adjustments == []
    assert result.bonuses == [] and result.promotion_ids == []


def test_rule_1_only_the_automatic_discount_worth_most_applies() -> None:
    # 10% of 8800 is 880; HK$20 off is 2000: the fixed amount wins; 5% loses too.
    assert priced(8800, [percent(1, 10), amount(2, 2000), percent(3, 5)]) == (6800, [(2, 2000)])
    # On a dearer plan the percentage is worth more.
    assert priced(30000, [percent(1, 10), amount(2, 2000)]) == (27000, [(1, 3000)])


def test_rule_1_a_tie_goes_to_the_older_promotion() -> None:
    assert priced(10000, [amount(7, 1000), percent(4, 10)]) == (9000, [(4, 1000)])
    assert priced(10000, [percent(4, 10), amount(2, 1000)]) == (9000, [(2, 1000)])


def test_rule_1_ignores_promotions_that_carry_a_code() -> None:
    assert priced(8800, [amount(1, 500, code="SECRET")]) == (8800, [])


def test_rule_2_a_code_applies_after_the_automatic_discount_on_what_is_left() -> None:
    # Automatic 10% (1000), then the code's 10% on the 9000 left (900), not on the list price.
    assert priced(10000, [percent(1, 10)], percent(9, 10, code="MORE")) == (8100, [(1, 1000), (9, 900)])
    # Two fixed amounts simply add up.
    assert priced(10000, [amount(1, 1000)], amount(9, 500, code="MORE")) == (8500, [(1, 1000), (9, 500)])


def test_rule_2_an_exclusive_code_drops_the_automatic_discount() -> None:
    # The automatic 20% is worth more, but an exclusive code replaces it.
    assert priced(10000, [percent(1, 20)], percent(9, 5, code="SOLO", exclusive=True)) == (9500, [(9, 500)])
    assert priced(10000, [amount(1, 3000)], amount(9, 100, code="SOLO", exclusive=True)) == (9900, [(9, 100)])


def test_rule_3_percentages_are_taken_before_fixed_amounts() -> None:
    # Automatic HK$10 off and a 10% code: 10% of 10000 first (1000), then 1000 → 8000
    # (fixed first would give 10000 - 1000 = 9000, 10% of it 900 → 8100).
    total, adjustments = priced(10000, [amount(1, 1000)], percent(9, 10, code="PCT"))
    assert total == 8000
    assert adjustments == [(9, 1000), (1, 1000)]


@pytest.mark.parametrize(
    ("list_amount", "off", "discount"),
    [
        (8830, 15, 1325),  # 1324.5 → 1325 (half up, not half even)
        (8850, 15, 1328),  # 1327.5 → 1328
        (8810, 15, 1322),  # 1321.5 → 1322
        (8820, 15, 1323),  # exact
        (8801, 10, 880),  # 880.1 → 880
        (8805, 10, 881),  # 880.5 → 881
        (3, 50, 2),  # 1.5 → 2
        (1, 1, 0),  # 0.01 → 0: not listed as an adjustment
    ],
)
def test_rule_3_percentages_round_half_up_to_the_minor_unit(list_amount: int, off: int, discount: int) -> None:
    total, adjustments = priced(list_amount, [percent(1, off)])
    assert total == list_amount - discount
    assert adjustments == ([(1, discount)] if discount else [])


def test_rule_3_the_total_never_goes_below_zero() -> None:
    assert priced(8800, [amount(1, 10000)]) == (0, [(1, 8800)])
    # 50% automatic (5000), then a HK$80 code capped at the 5000 left.
    assert priced(10000, [percent(1, 50)], amount(9, 8000, code="BIG")) == (0, [(1, 5000), (9, 5000)])
    # A 100% code leaves nothing for the fixed automatic discount, which is then not listed.
    assert priced(8800, [amount(1, 500)], percent(9, 100, code="FREE")) == (0, [(9, 8800)])


def test_rule_4_every_eligible_bonus_is_given_and_is_not_a_discount() -> None:
    automatic = [bonus(1, DATA), bonus(2, DATA, VOICE), amount(3, 500)]
    result = price(Money(8800, HKD), "monthly", automatic, bonus(9, VOICE, code="GIFT"), NOW, False)
    assert [(b.promotion_id, b.allowance) for b in result.bonuses] == [(1, DATA), (2, DATA), (2, VOICE), (9, VOICE)]
    # A bonus never competes with (or displaces) the automatic discount.
    assert [(a.promotion_id, a.amount) for a in result.adjustments] == [(3, 500)]
    assert result.total == Money(8300, HKD)
    assert result.promotion_ids == [1, 2, 3, 9]


def test_rule_4_bonuses_honour_plan_window_and_first_renewal() -> None:
    automatic = [
        bonus(1, DATA, plan_codes=frozenset({"big"})),
        bonus(2, DATA, ends_at=NOW),
        bonus(3, DATA, first_renewal_only=True),
        bonus(4, VOICE),
    ]
    result = price(Money(8800, HKD), "monthly", automatic, None, NOW, False)
    assert [b.promotion_id for b in result.bonuses] == [4]
    result = price(Money(8800, HKD), "monthly", automatic, None, NOW, True)
    assert [b.promotion_id for b in result.bonuses] == [3, 4]


def test_first_renewal_only() -> None:
    offer = percent(1, 20, first_renewal_only=True)
    assert priced(10000, [offer], first_renewal=True) == (8000, [(1, 2000)])
    assert priced(10000, [offer], first_renewal=False) == (10000, [])
    # When the offer does not apply, the next best automatic discount does.
    assert priced(10000, [offer, percent(2, 5)], first_renewal=False) == (9500, [(2, 500)])


def test_plan_filter() -> None:
    only_big = percent(1, 10, plan_codes=frozenset({"big", "huge"}))
    assert priced(10000, [only_big], plan="big") == (9000, [(1, 1000)])
    assert priced(10000, [only_big], plan="monthly") == (10000, [])
    assert priced(10000, [percent(2, 10, plan_codes=frozenset())], plan="monthly") == (10000, [])


@pytest.mark.parametrize(
    ("now", "applies"),
    [
        (NOW - timedelta(microseconds=1), False),  # not started
        (NOW, True),  # starts_at is inclusive
        (NOW + timedelta(days=7) - timedelta(microseconds=1), True),
        (NOW + timedelta(days=7), False),  # ends_at is exclusive
    ],
)
def test_time_window_edges(now: datetime, applies: bool) -> None:
    sale = percent(1, 10, starts_at=NOW, ends_at=NOW + timedelta(days=7))
    assert priced(10000, [sale], now=now) == ((9000, [(1, 1000)]) if applies else (10000, []))


def test_open_ended_windows() -> None:
    assert priced(10000, [percent(1, 10, starts_at=NOW - timedelta(days=999))]) == (9000, [(1, 1000)])
    assert priced(10000, [percent(1, 10, ends_at=NOW + timedelta(seconds=1))]) == (9000, [(1, 1000)])
