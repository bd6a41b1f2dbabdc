"""The catalog API's request and response bodies (separate from the tables on purpose)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from duckline.catalog.models import Plan
from duckline.catalog.rules import PlanKind, Unit, Zone
from duckline.catalog.service import PlanView
from duckline.catalog.voice_rating import MAX_INCREMENT
from duckline.web.fields import Amount, Texts
from duckline.web.schemas import MoneyOut


class AllowanceIn(BaseModel):
    unit: Unit
    zone: Zone
    amount: Amount


class PlanIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "code": "hk-voice-30",
                "kind": "plan",
                "names": {"en": "Voice 30", "zh_Hant": "話音 30", "zh_Hans": "话音 30"},
                "descriptions": {"en": "...", "zh_Hant": "...", "zh_Hans": "..."},
                "price": {"amount": 8800, "currency": "HKD"},
                "validity_days": 30,
                "voice_initial_increment": 60,
                "voice_subsequent_increment": 60,
                "allowances": [{"unit": "voice_seconds", "zone": "HK", "amount": 60000}],
            }
        }
    )
    code: str = Field(min_length=2, max_length=40, pattern=r"^[a-z0-9][a-z0-9\-]*$")
    kind: PlanKind = PlanKind.PLAN
    names: Texts
    descriptions: Texts
    price: MoneyOut
    validity_days: int = Field(default=0, ge=0, le=3660)
    validity_months: int = Field(default=0, ge=0, le=120)
    voice_initial_increment: int = Field(
        default=1, ge=1, le=MAX_INCREMENT, description="seconds: a call is charged this much as soon as it starts"
    )
    voice_subsequent_increment: int = Field(
        default=1, ge=1, le=MAX_INCREMENT, description="seconds: after the first block, each block a call enters"
    )
    allowances: list[AllowanceIn] = Field(min_length=1, max_length=20)


class PlanOut(BaseModel):
    code: str
    kind: str
    status: str
    names: dict[str, str]
    descriptions: dict[str, str]
    price: MoneyOut
    price_display: str
    validity_days: int
    validity_months: int
    voice_initial_increment: int
    voice_subsequent_increment: int
    allowances: list[AllowanceIn]


class AllowanceOut(BaseModel):
    unit: str
    zone: str
    initial: int
    used: int
    remaining: int
    used_percent: int
    valid_until: datetime | None


def plan_out_of(view: PlanView) -> PlanOut:
    allowances = [AllowanceIn(unit=a.unit, zone=a.zone, amount=a.amount) for a in view.allowances]
    return plan_out(view.plan, allowances, view.price_display)


def plan_out(plan: Plan, allowances: list[AllowanceIn], price_display: str) -> PlanOut:
    return PlanOut(
        code=plan.code,
        kind=plan.kind.value,
        status=plan.status.value,
        names=plan.names,
        descriptions=plan.descriptions,
        price=MoneyOut(amount=plan.price_amount, currency=plan.currency),
        price_display=price_display,
        validity_days=plan.validity_days,
        validity_months=plan.validity_months,
        voice_initial_increment=plan.voice_initial_increment,
        voice_subsequent_increment=plan.voice_subsequent_increment,
        allowances=allowances,
    )


class RatingGroupIn(BaseModel):
    """What a rating group (or one service of it) is charged in."""

    model_config = ConfigDict(json_schema_extra={"example": {"unit": "data_bytes"}})
    unit: Unit


class RatingGroupOut(BaseModel):
    rating_group: int
    service_identifier: int | None
    unit: Unit
