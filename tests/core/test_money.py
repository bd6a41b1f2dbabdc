"""Money in integer minor units (duckline.core.money)."""

from __future__ import annotations

import pytest

from duckline.core.money import Money


def test_money_holds_minor_units() -> None:
    price = Money(12800, "HKD")
    assert (price.amount, price.currency) == (12800, "HKD")
    assert price.as_dict() == {"amount": 12800, "currency": "HKD"}


@pytest.mark.parametrize("amount", [128.0, 1.5, True, False, "12800", None])
def test_amount_must_be_an_int(amount: object) -> None:
    with pytest.raises(TypeError):
        Money(amount, "HKD")  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [0, -500, 10**15])
def test_zero_negative_and_large_amounts_are_fine(amount: int) -> None:
    assert Money(amount, "HKD").amount == amount


@pytest.mark.parametrize("currency", ["hkd", "Hkd", "HK", "HKDD", ""])
def test_currency_code_must_be_three_upper_case_letters(currency: str) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(100, currency)


@pytest.mark.parametrize("currency", ["HK$", "US1"])
def test_currency_code_with_non_letters_is_rejected(currency: str) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        Money(100, currency)


def test_money_is_immutable_and_compares_by_value() -> None:
    price = Money(12800, "HKD")
    assert price == Money(12800, "HKD")
    assert price != Money(12800, "MOP")
    assert price != Money(12801, "HKD")
    with pytest.raises(AttributeError):
        price.amount = 1  # type: ignore[misc]


def test_add_and_subtract_same_currency() -> None:
    assert Money(12800, "HKD") + Money(1200, "HKD") == Money(14000, "HKD")
    assert Money(12800, "HKD") - Money(12900, "HKD") == Money(-100, "HKD")


@pytest.mark.parametrize("operation", ["add", "sub"])
def test_mixing_currencies_is_refused(operation: str) -> None:
    hkd, mop = Money(100, "HKD"), Money(100, "MOP")
    with pytest.raises(ValueError, match="cannot mix HKD and MOP"):
        _ = hkd + mop if operation == "add" else hkd - mop


@pytest.mark.parametrize(
    ("money", "locale", "text"),
    [
        (Money(12800, "HKD"), "en_HK", "HK$128.00"),
        (Money(12800, "HKD"), "en-HK", "HK$128.00"),  # hyphenated tags are accepted
        (Money(5, "HKD"), "en_HK", "HK$0.05"),
        (Money(12345678, "HKD"), "en_HK", "HK$123,456.78"),
        (Money(-12800, "HKD"), "en_HK", "-HK$128.00"),
        (Money(500, "JPY"), "en", "¥500"),  # no minor unit: 500 is ¥500, not ¥5.00
        (Money(12800, "USD"), "en", "$128.00"),
    ],
)
def test_format(money: Money, locale: str, text: str) -> None:
    assert money.format(locale) == text
