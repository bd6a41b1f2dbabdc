"""The usage API's request and response bodies (separate from the tables on purpose)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field

from duckline.catalog.rules import Zone
from duckline.usage.ingest import UsageKind
from duckline.web.fields import Quantity


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
