"""Request and response bodies of the API (separate from the tables on purpose)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from duckline.adapters.db.tables import Account, EsimProfile, Line, Person, Plan
from duckline.domain.catalog import PlanKind, Unit, Zone
from duckline.domain.esim import activation_code
from duckline.domain.lines import can_use_service
from duckline.domain.phone import display
from duckline.money import Money
from duckline.services.catalog import PlanView
from duckline.services.lines import LineStatusView, LineView, Period, Schedule
from duckline.services.usage import UsageKind
from duckline.web.fields import MAX_MINOR_UNITS, Amount, Currency, Phone, Quantity, Texts

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= to get the next page; null on the last")


class MoneyOut(BaseModel):
    # Signed here: a negative price is refused by the catalogue's own rule, with its own code.
    amount: int = Field(ge=-MAX_MINOR_UNITS, le=MAX_MINOR_UNITS, description="minor units, e.g. cents")
    currency: Currency

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        Money(0, value)  # raises ValueError (a 422) for anything that is not an ISO 4217 code
        return value


class AccountOut(BaseModel):
    id: int
    phone: str
    phone_verified: bool
    email: str | None
    role: str
    language: str

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            phone=account.phone,
            phone_verified=account.phone_verified_at is not None,
            email=account.email,
            role=account.role.value,
            language=account.language,
        )


class PeriodOut(BaseModel):
    """A period of the line's plan: the one running now, or one renewed ahead."""

    plan_code: str | None = Field(description="null only for a staff-started period followed by a queued plan change")
    starts_at: datetime | None
    ends_at: datetime
    order_id: int | None = Field(description="the order that bought it; null for a period started by staff")

    @classmethod
    def of(cls, period: Period) -> PeriodOut:
        return cls(
            plan_code=period.plan.code if period.plan else None,
            starts_at=period.start,
            ends_at=period.end,
            order_id=period.order_id,
        )


class LineOut(BaseModel):
    id: int
    msisdn: str
    msisdn_display: str
    status: str
    plan_code: str | None = None
    expires_at: datetime | None = Field(description="the end of the last period paid for, queued ones included")
    voicemail: bool
    caller_id: bool
    auto_renew: bool = False
    suspension: str | None = Field(
        default=None, description="lost or stolen: service stopped at the subscriber's request, over any status"
    )
    suspended_at: datetime | None = None
    in_service: bool = Field(default=False, description="calls, SMS and data go through now")
    current_period: PeriodOut | None = Field(
        default=None,
        description="the period running now (for a line past its expiry, the last one); its allowances end at"
        " its ends_at, which is earlier than expires_at when a renewal is queued; null before activation",
    )
    queued_periods: list[PeriodOut] = Field(
        default_factory=list, description="periods renewed ahead, in order, each starting when the one before ends"
    )

    @classmethod
    def of(cls, line: Line, plan_code: str | None = None, periods: Schedule | None = None) -> LineOut:
        """`periods` as lines.schedule gives it; without it, a line with nothing queued is assumed
        (true of a line just opened or activated by staff)."""
        if periods is None:
            current = Period(None, line.period_start, line.expires_at, None) if line.expires_at else None
            periods = Schedule(current)
        current_out = PeriodOut.of(periods.current) if periods.current else None
        if current_out is not None and current_out.plan_code is None and not periods.queued:
            current_out.plan_code = plan_code
        return cls(
            id=line.id,
            msisdn=line.msisdn,
            msisdn_display=display(line.msisdn),
            status=line.status.value,
            plan_code=plan_code,
            expires_at=line.expires_at,
            voicemail=line.voicemail,
            caller_id=line.caller_id,
            auto_renew=line.auto_renew,
            suspension=line.suspension.value if line.suspension else None,
            suspended_at=line.suspended_at,
            in_service=can_use_service(line.status, line.suspension),
            current_period=current_out,
            queued_periods=[PeriodOut.of(p) for p in periods.queued],
        )


def line_out(view: LineView) -> LineOut:
    return LineOut.of(view.line, view.plan_code, view.schedule)


class EsimOut(BaseModel):
    iccid: str
    activation_code: str
    smdp_address: str
    matching_id: str
    qr_png: str
    qr_svg: str

    @classmethod
    def of(cls, line: Line, profile: EsimProfile) -> EsimOut:
        return cls.of_id(line.id, profile)

    @classmethod
    def of_id(cls, line_id: int, profile: EsimProfile) -> EsimOut:
        return cls(
            iccid=profile.iccid,
            activation_code=activation_code(profile.smdp_address, profile.matching_id),
            smdp_address=profile.smdp_address,
            matching_id=profile.matching_id,
            qr_png=f"/api/v1/lines/{line_id}/esim/qr.png",
            qr_svg=f"/api/v1/lines/{line_id}/esim/qr.svg",
        )


class RegistrationOut(BaseModel):
    """The same for every registration that passes the checks, whether or not the number or the
    identity already had an account (then the account's owner is told instead): nobody learns
    from it who is a customer."""

    phone: str = Field(description="where the code was sent (E.164)")
    next_step: str = "verify_phone"


class VerifyIn(BaseModel):
    phone: Phone
    code: str = Field(min_length=6, max_length=6, pattern=r"^\d{6}$")


class PhoneIn(BaseModel):
    phone: Phone


class VerifiedOut(BaseModel):
    account: AccountOut
    line: LineOut
    esim: EsimOut


class LoginIn(BaseModel):
    phone: Phone
    password: str = Field(min_length=1, max_length=200)


class SessionOut(BaseModel):
    account: AccountOut
    csrf_token: str


class TokenIn(LoginIn):
    name: str = Field(default="api client", max_length=100)


class TokenOut(BaseModel):
    token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime | None


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
    allowances: list[AllowanceIn]


class AllowanceOut(BaseModel):
    unit: str
    zone: str
    initial: int
    used: int
    remaining: int
    used_percent: int
    valid_until: datetime | None


class UsageWarningOut(BaseModel):
    kind: str = "usage"
    unit: str
    zone: str
    threshold: int
    used_percent: int


class ExpiryWarningOut(BaseModel):
    kind: str = "expiry"
    within_days: int
    expires_at: datetime


class LineStatusOut(BaseModel):
    line: LineOut
    plan: PlanOut | None = Field(description="the plan last bought (a queued plan change included)")
    expires_at: datetime | None = Field(description="the end of the last period paid for, queued ones included")
    allowances: list[AllowanceOut] = Field(description="the current period's (valid now)")
    warnings: list[UsageWarningOut | ExpiryWarningOut]
    current_period: PeriodOut | None = Field(
        default=None, description="the period running now, whose allowances are listed; null before activation"
    )
    queued_periods: list[PeriodOut] = Field(default_factory=list, description="periods renewed ahead, in order")

    @classmethod
    def of(cls, view: LineStatusView, plan: PlanOut | None) -> LineStatusOut:
        warnings: list[UsageWarningOut | ExpiryWarningOut] = [
            UsageWarningOut(unit=w.unit, zone=w.zone, threshold=w.threshold, used_percent=w.used_percent)
            for w in view.usage_warnings
        ]
        if view.expiry_warning:
            warnings.append(
                ExpiryWarningOut(within_days=view.expiry_warning.days, expires_at=view.expiry_warning.expires_at)
            )
        line = LineOut.of(view.line, view.plan.code if view.plan else None, view.schedule)
        return cls(
            line=line,
            plan=plan,
            expires_at=view.line.expires_at,
            allowances=[AllowanceOut(**a.__dict__) for a in view.allowances],
            warnings=warnings,
            current_period=line.current_period,
            queued_periods=line.queued_periods,
        )


class FeaturesIn(BaseModel):
    voicemail: bool | None = None
    caller_id: bool | None = None


class ActivateIn(BaseModel):
    plan_code: str = Field(max_length=40)


class UsageRecordIn(BaseModel):
    record_id: str = Field(min_length=1, max_length=100)
    msisdn: str = Field(pattern=r"^\+[1-9]\d{6,14}$", description="E.164")
    kind: UsageKind
    zone: Zone = Zone.HK
    quantity: Quantity = Field(description="a JSON integer: seconds for voice, messages for sms, bytes for data")
    started_at: AwareDatetime


class UsageBatchIn(BaseModel):
    records: list[UsageRecordIn] = Field(min_length=1, max_length=5000)


class UsageRecordOutcomeOut(BaseModel):
    record_id: str
    status: str
    charged: int
    overage: int
    error: str | None


class UsageBatchOut(BaseModel):
    applied: int
    duplicates: int
    conflicts: int
    rejected: int
    records: list[UsageRecordOutcomeOut]


class NumbersIn(BaseModel):
    numbers: list[Phone] = Field(min_length=1, max_length=100_000)


class NumbersOut(BaseModel):
    added: int
    already_present: int


class KycIn(BaseModel):
    status: str = Field(pattern="^(verified|rejected)$")
    reason: str | None = Field(default=None, max_length=300)


class PersonOut(BaseModel):
    id: int
    document_type: str
    document_number_masked: str
    name_en: str | None
    name_zh: str | None
    birth_date: date
    kyc_status: str
    kyc_reason: str | None

    @classmethod
    def of(cls, person: Person) -> PersonOut:
        return cls(
            id=person.id,
            document_type=person.document_type.value,
            document_number_masked=person.document_masked,
            name_en=person.name_en,
            name_zh=person.name_zh,
            birth_date=person.birth_date,
            kyc_status=person.kyc_status.value,
            kyc_reason=person.kyc_reason,
        )


class AuditOut(BaseModel):
    id: int
    actor_id: int | None
    action: str
    target: str
    detail: dict[str, object]
    at: datetime
    text: str = Field(description="What happened, in the caller's language, values formatted for the reader.")


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
        allowances=allowances,
    )
