"""The lines API's request and response bodies (separate from the tables on purpose)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from duckline.accounts.phone import display
from duckline.catalog.schemas import AllowanceOut, PlanOut
from duckline.lines.esim import activation_code
from duckline.lines.models import EsimProfile, Line
from duckline.lines.service import LineStatusView, LineView, Period, Schedule
from duckline.lines.states import can_use_service
from duckline.usage.schemas import ExpiryWarningOut, UsageWarningOut
from duckline.web.fields import Phone


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


class NumbersIn(BaseModel):
    numbers: list[Phone] = Field(min_length=1, max_length=100_000)


class NumbersOut(BaseModel):
    added: int
    already_present: int
