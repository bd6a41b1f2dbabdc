"""Usage reports from network elements (API key with the network role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from duckline.accounts.models import Account
from duckline.accounts.roles import USAGE_REPORTERS
from duckline.usage import ingest as usage
from duckline.usage.schemas import UsageBatchIn, UsageBatchOut, UsageRecordOutcomeOut
from duckline.web.deps import RuntimeDep, require_roles
from duckline.web.edge import BULK

router = APIRouter(prefix="/usage", tags=["usage"])
Reporter = Annotated[Account, Depends(require_roles(USAGE_REPORTERS))]


@router.post("/batches", response_model=UsageBatchOut, openapi_extra=BULK)
def post_batch(body: UsageBatchIn, runtime: RuntimeDep, reporter: Reporter) -> UsageBatchOut:
    """Apply a batch of usage records. Each record_id is charged at most once per reporting
    client, so a batch may be retried freely; usage beyond the allowances is kept as overage."""
    records = [usage.UsageInput(r.record_id, r.msisdn, r.kind, r.zone, r.quantity, r.started_at) for r in body.records]
    outcome = usage.report_batch(runtime.unit_of_work, reporter, records)
    return UsageBatchOut(
        applied=outcome.count("applied"),
        duplicates=outcome.count("duplicate"),
        conflicts=outcome.count("conflict"),
        rejected=outcome.count("rejected"),
        records=[UsageRecordOutcomeOut(**r.__dict__) for r in outcome.records],
    )
