"""Mobile numbers normalised to E.164 (duckline.accounts.phone)."""

from __future__ import annotations

import phonenumbers
import pytest

from duckline.accounts.phone import display, normalise_mobile, normalise_pool_number
from duckline.core.errors import DomainError, ErrorCode

REGIONS = ("HK", "CN", "MO")


def _is_valid_mobile(e164: str, region: str) -> bool:
    number = phonenumbers.parse(e164)
    return (
        phonenumbers.is_valid_number(number)
        and phonenumbers.region_code_for_number(number) == region
        and phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
    )


@pytest.mark.parametrize(
    ("e164", "region"),
    [("+85251234567", "HK"), ("+85261234567", "HK"), ("+8613800138000", "CN"), ("+85366123456", "MO")],
)
def test_fixtures_are_real_mobiles_by_phonenumbers(e164: str, region: str) -> None:
    assert _is_valid_mobile(e164, region)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("5123 4567", "+85251234567"),  # no country code: Hong Kong by default
        ("51234567", "+85251234567"),
        ("+852 6123 4567", "+85261234567"),
        ("+852-6123-4567", "+85261234567"),
        ("(852) 6123 4567", "+85261234567"),
        ("001 852 6123 4567", "+85261234567"),  # 001 is Hong Kong's international access code
        ("+86 138 0013 8000", "+8613800138000"),
        ("+8613800138000", "+8613800138000"),
        ("+853 6612 3456", "+85366123456"),
    ],
)
def test_allowed_mobiles_normalise_to_e164(raw: str, e164: str) -> None:
    assert normalise_mobile(raw, REGIONS) == e164


def test_allowed_regions_can_be_any_iterable() -> None:
    assert normalise_mobile("+853 6612 3456", iter(["MO"])) == "+85366123456"


def test_default_region_applies_to_numbers_without_country_code() -> None:
    assert normalise_mobile("138 0013 8000", REGIONS, default_region="CN") == "+8613800138000"
    # The same digits read as a Hong Kong number are not valid.
    with pytest.raises(DomainError) as info:
        normalise_mobile("138 0013 8000", REGIONS)
    assert info.value.error is ErrorCode.PHONE_INVALID


@pytest.mark.parametrize(
    ("raw", "allowed"),
    [
        ("+44 7400 123456", REGIONS),  # UK mobile
        ("+1 650 253 0000", REGIONS),  # US number
        ("+44 20 7946 0018", REGIONS),  # UK fixed line: region is checked first
        ("+86 138 0013 8000", ("HK", "MO")),  # Mainland number when only HK and MO are allowed
    ],
)
def test_numbers_outside_allowed_regions_are_rejected(raw: str, allowed: tuple[str, ...]) -> None:
    assert phonenumbers.is_valid_number(phonenumbers.parse(raw))
    with pytest.raises(DomainError) as info:
        normalise_mobile(raw, allowed)
    assert info.value.error is ErrorCode.PHONE_REGION_NOT_ALLOWED
    assert info.value.field == "phone"


def test_hong_kong_fixed_line_is_not_a_mobile() -> None:
    fixed = phonenumbers.parse("2123 4567", "HK")
    assert phonenumbers.is_valid_number(fixed)
    assert phonenumbers.number_type(fixed) == phonenumbers.PhoneNumberType.FIXED_LINE
    with pytest.raises(DomainError) as info:
        normalise_mobile("2123 4567", REGIONS)
    assert info.value.error is ErrorCode.PHONE_INVALID
    assert info.value.field == "phone"


@pytest.mark.parametrize(
    "raw",
    [
        "not a number",
        "",
        "+",
        "123",
        "5123 456",  # seven digits
        "5123 45678",  # nine digits
        "+852 0123 4567",  # no such Hong Kong range
        "+999 1234 5678",  # no such country code
    ],
)
def test_garbage_is_invalid(raw: str) -> None:
    with pytest.raises(DomainError) as info:
        normalise_mobile(raw, REGIONS)
    assert info.value.error is ErrorCode.PHONE_INVALID
    assert info.value.field == "phone"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [("5123 4567", "+85251234567"), ("2123 4567", "+85221234567"), ("+44 20 7946 0018", "+442079460018")],
)
def test_pool_numbers_accept_any_valid_number(raw: str, e164: str) -> None:
    assert normalise_pool_number(raw) == e164


@pytest.mark.parametrize("raw", ["garbage", "5123 456", ""])
def test_pool_numbers_invalid(raw: str) -> None:
    with pytest.raises(DomainError) as info:
        normalise_pool_number(raw)
    assert info.value.error is ErrorCode.NUMBER_INVALID
    assert info.value.field == "msisdn"
    assert info.value.params == {"number": raw}


@pytest.mark.parametrize(
    ("e164", "shown"),
    [("+85251234567", "+852 5123 4567"), ("+8613800138000", "+86 138 0013 8000"), ("+85366123456", "+853 6612 3456")],
)
def test_display_in_international_format(e164: str, shown: str) -> None:
    assert display(e164) == shown
    assert normalise_mobile(shown, REGIONS) == e164
