"""Mobile numbers: parsed and normalised to E.164 with `phonenumbers`."""

from __future__ import annotations

from collections.abc import Iterable

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from duckline.core.errors import DomainError, ErrorCode

_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalise_mobile(raw: str, allowed_regions: Iterable[str], default_region: str = "HK") -> str:
    """Return the E.164 form of a mobile number from one of the allowed regions."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException as exc:
        raise DomainError(ErrorCode.PHONE_INVALID, field="phone") from exc
    if not phonenumbers.is_valid_number(number):
        raise DomainError(ErrorCode.PHONE_INVALID, field="phone")
    region = phonenumbers.region_code_for_number(number)
    if region not in set(allowed_regions):
        raise DomainError(ErrorCode.PHONE_REGION_NOT_ALLOWED, field="phone")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise DomainError(ErrorCode.PHONE_INVALID, field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_pool_number(raw: str, default_region: str = "HK") -> str:
    """Numbers the operator loads into its pool: any valid number, as E.164."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException as exc:
        raise DomainError(ErrorCode.NUMBER_INVALID, field="msisdn", number=raw) from exc
    if not phonenumbers.is_valid_number(number):
        raise DomainError(ErrorCode.NUMBER_INVALID, field="msisdn", number=raw)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def display(e164: str) -> str:
    """International format for people: +852 5123 4567."""
    return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
