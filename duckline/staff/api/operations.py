"""Staff operations on renewals: the reconciliation queue, promotions, running the jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import BaseModel, Field

from duckline.accounts.models import Account
from duckline.accounts.roles import STAFF, Role
from duckline.billing import reconciliation
from duckline.billing.schemas import CaseOut, PromotionIn, PromotionOut, ResolveIn
from duckline.catalog import promotions
from duckline.catalog.rules import Allowance
from duckline.core import jobs
from duckline.messaging import outgoing_webhooks
from duckline.messaging.models import WebhookDelivery
from duckline.web.deps import PUBLIC, RuntimeDep, language, require_roles
from duckline.web.fields import Cursor, PathId
from duckline.web.openapi import errors
from duckline.web.schemas import Page

router = APIRouter(tags=["operations"])
Staff = Annotated[Account, Depends(require_roles(STAFF))]
Resolver = Annotated[Account, Depends(require_roles({Role.SUPPORT, Role.FINANCE, Role.ADMIN}))]
Admin = Annotated[Account, Depends(require_roles({Role.ADMIN}))]
Language = Annotated[str, Depends(language)]


@router.get("/reconciliation/cases", response_model=Page[CaseOut])
def cases(
    runtime: RuntimeDep,
    actor: Staff,
    reader_language: Language,
    state: Annotated[str, Query(pattern="^(open|resolved|all)$")] = "open",
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[CaseOut]:
    """Renewals that went wrong: paid but not applied, stuck payments, amount mismatches."""
    found = reconciliation.cases(runtime.unit_of_work, actor, state, cursor, limit)
    return Page[CaseOut](
        items=[CaseOut.of(c.ticket, c.order, reader_language) for c in found.items], next_cursor=found.next_cursor
    )


@router.post("/reconciliation/cases/{ticket_id}/resolve", response_model=CaseOut, responses=errors(409, 503))
def resolve(
    ticket_id: PathId, body: ResolveIn, runtime: RuntimeDep, actor: Resolver, reader_language: Language
) -> CaseOut:
    """Apply the paid renewal, refund it to the original method, or close the case; a reason is required."""
    case = reconciliation.settle(runtime, actor, ticket_id, body.action, body.reason)
    return CaseOut.of(case.ticket, case.order, reader_language)


@router.post("/jobs/{name}")
def run_job(name: Annotated[str, Path(max_length=40)], runtime: RuntimeDep, actor: Admin) -> dict[str, object]:
    """Run a scheduled job now (reconcile, auto-renew, lifecycle)."""
    return jobs.run(runtime, name)


@router.get("/promotions", response_model=list[PromotionOut])
def list_promotions(runtime: RuntimeDep, actor: Staff) -> list[PromotionOut]:
    return [PromotionOut.of(p) for p in promotions.every_promotion(runtime.unit_of_work)]


@router.get("/promotions/current", response_model=list[PromotionOut], tags=["renewal"], dependencies=[PUBLIC])
def current_promotions(runtime: RuntimeDep) -> list[PromotionOut]:
    """Promotions running now that apply without a code (codes are not listed)."""
    return [PromotionOut.of(p) for p in promotions.running_without_code(runtime.unit_of_work)]


@router.post("/promotions", response_model=PromotionOut, status_code=status.HTTP_201_CREATED, responses=errors(409))
def create_promotion(body: PromotionIn, runtime: RuntimeDep, actor: Admin) -> PromotionOut:
    form = promotions.PromotionInput(
        name=body.name,
        kind=body.kind,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        percent_off=body.percent_off,
        amount_off=body.amount_off,
        currency=body.currency,
        bonus=tuple(Allowance(b.unit, b.zone, b.amount) for b in body.bonus),
        code=body.code,
        plan_codes=tuple(body.plan_codes) if body.plan_codes is not None else None,
        first_renewal_only=body.first_renewal_only,
        exclusive=body.exclusive,
        max_uses=body.max_uses,
        max_uses_per_account=body.max_uses_per_account,
    )
    return PromotionOut.of(promotions.add(runtime.unit_of_work, actor, form))


@router.post("/promotions/{promotion_id}/deactivate", response_model=PromotionOut)
def deactivate_promotion(promotion_id: PathId, runtime: RuntimeDep, actor: Admin) -> PromotionOut:
    return PromotionOut.of(promotions.end(runtime.unit_of_work, actor, promotion_id))


class SubscriptionIn(BaseModel):
    url: str = Field(min_length=8, max_length=500, pattern=r"^https?://")
    event_types: list[Annotated[str, Field(max_length=60)]] = Field(min_length=1, max_length=20)


class SubscriptionOut(BaseModel):
    id: int
    url: str
    event_types: list[str]
    active: bool
    secret: str | None = Field(default=None, description="shown only when created")


class DeliveryOut(BaseModel):
    id: int
    event_id: int
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


@router.post(
    "/webhook-subscriptions", response_model=SubscriptionOut, status_code=status.HTTP_201_CREATED, tags=["integrations"]
)
def subscribe(body: SubscriptionIn, runtime: RuntimeDep, actor: Admin) -> SubscriptionOut:
    """Receive Duckline's events (or "*" for all) at a URL, signed with the returned secret:
    header `Duckline-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`."""
    s = outgoing_webhooks.add_subscription(runtime.unit_of_work, actor, body.url, body.event_types)
    return SubscriptionOut(id=s.id, url=s.url, event_types=s.event_types, active=s.active, secret=s.secret)


@router.get("/webhook-subscriptions", response_model=list[SubscriptionOut], tags=["integrations"])
def subscriptions(runtime: RuntimeDep, actor: Admin) -> list[SubscriptionOut]:
    rows = outgoing_webhooks.subscriptions(runtime.unit_of_work, actor)
    return [SubscriptionOut(id=s.id, url=s.url, event_types=s.event_types, active=s.active) for s in rows]


@router.get(
    "/webhook-subscriptions/{subscription_id}/deliveries", response_model=Page[DeliveryOut], tags=["integrations"]
)
def deliveries(
    subscription_id: PathId,
    runtime: RuntimeDep,
    actor: Admin,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[DeliveryOut]:
    """The delivery log: every attempt's outcome, newest first."""
    rows, next_cursor = outgoing_webhooks.deliveries(runtime.unit_of_work, actor, subscription_id, cursor, limit)
    return Page[DeliveryOut](items=[_delivery_out(d) for d in rows], next_cursor=next_cursor)


@router.post("/webhook-deliveries/{delivery_id}/replay", response_model=DeliveryOut, tags=["integrations"])
def replay(delivery_id: PathId, runtime: RuntimeDep, actor: Admin) -> DeliveryOut:
    return _delivery_out(outgoing_webhooks.replay_delivery(runtime.unit_of_work, actor, delivery_id))


def _delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event_id=d.event_id,
        status=d.status,
        attempts=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
    )
