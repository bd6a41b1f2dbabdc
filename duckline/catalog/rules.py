"""The plan catalogue: units, zones, validity periods and period arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from duckline.core.errors import DomainError, ErrorCode

TEXT_LANGUAGES = ("en", "zh_Hant", "zh_Hans")


class Unit(StrEnum):
    VOICE_SECONDS = "voice_seconds"
    SMS = "sms"
    DATA_BYTES = "data_bytes"


class Zone(StrEnum):
    HK = "HK"
    MAINLAND = "CN"
    MACAU = "MO"
    INTERNATIONAL = "INTL"  # calls and SMS to any other country (the zone of the number called)


class PlanKind(StrEnum):
    PLAN = "plan"  # starts a period with its allowances
    ADDON = "addon"  # tops up allowances without changing expiry


class PlanStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class Validity:
    days: int = 0
    months: int = 0

    def __post_init__(self) -> None:
        if (self.days > 0) == (self.months > 0) or self.days < 0 or self.months < 0:
            raise DomainError(ErrorCode.PLAN_INVALID, field="validity", reason="give either days or months")

    def end_of_period(self, start: datetime, tz: str = "Asia/Hong_Kong") -> datetime:
        """When a period that starts at `start` ends, in UTC.

        Calendar months are counted on the local calendar: 31 Jan + 1 month is 28 (or 29) Feb,
        and the time of day is kept, so a period bought at 15:00 HKT ends at 15:00 HKT.
        """
        if start.tzinfo is None:
            raise ValueError("periods start at an aware datetime")
        local = start.astimezone(ZoneInfo(tz))
        end = local + relativedelta(months=self.months) if self.months else local + timedelta(days=self.days)
        return end.astimezone(UTC)


@dataclass(frozen=True)
class Allowance:
    unit: Unit
    zone: Zone
    amount: int

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise DomainError(ErrorCode.PLAN_INVALID, field="allowances", reason="amounts must be positive")


def check_texts(texts: dict[str, str], field: str) -> dict[str, str]:
    """Plan names and descriptions come in all three languages."""
    missing = [lang for lang in TEXT_LANGUAGES if not (texts.get(lang) or "").strip()]
    if missing:
        raise DomainError(ErrorCode.PLAN_INVALID, field=field, reason=f"missing {', '.join(missing)}")
    return {lang: texts[lang].strip() for lang in TEXT_LANGUAGES}
