"""Staff operations on renewals: the reconciliation queue, promotions, running the jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy import select

from duckline.adapters.db.tables import Account, Order, Promotion, Ticket
from duckline.adapters.db.types import is_id
from duckline.domain.catalog import Allowance
from duckline.domain.roles import STAFF, Role
from duckline.errors import DomainError, ErrorCode
from duckline.services import jobs, promotions, reconciliation
from duckline.web.billing_schemas import CaseOut, PromotionIn, PromotionOut, ResolveIn
from duckline.web.deps import RuntimeDep, require_roles
from duckline.web.pagination import page
from duckline.web.schemas import Page

router = APIRouter(tags=["operations"])
Staff = Annotated[Account, Depends(require_roles(STAFF))]
Resolver = Annotated[Account, Depends(require_roles({Role.SUPPORT, Role.FINANCE, Role.ADMIN}))]
Admin = Annotated[Account, Depends(require_roles({Role.ADMIN}))]


@router.get("/reconciliation/cases", response_model=Page[CaseOut])
def cases(
    runtime: RuntimeDep,
    actor: Staff,
    state: Annotated[str, Query(pattern="^(open|resolved|all)$")] = "open",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[CaseOut]:
    """Renewals that went wrong: paid but not applied, stuck payments, amount mismatches."""
    query = select(Ticket).where(Ticket.kind.in_(("reconciliation", "payment_mismatch")))
    if state != "all":
        query = query.where(Ticket.status == state)
    with runtime.unit_of_work() as uow:
        rows, next_cursor = page(uow.session, query, Ticket.id, cursor, limit)
        return Page[CaseOut](
            items=[CaseOut.of(t, uow.session.get(Order, t.order_id) if t.order_id else None) for t in rows],
            next_cursor=next_cursor,
        )


@router.post("/reconciliation/cases/{ticket_id}/resolve", response_model=CaseOut)
def resolve(ticket_id: int, body: ResolveIn, runtime: RuntimeDep, actor: Resolver) -> CaseOut:
    """Apply the paid renewal, refund it to the original method, or close the case; a reason is required."""
    if not is_id(ticket_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    if body.action == "refund" and actor.role not in (Role.FINANCE, Role.ADMIN):
        raise DomainError(ErrorCode.FORBIDDEN)
    ticket = reconciliation.resolve(runtime, actor, ticket_id, body.action, body.reason)
    with runtime.unit_of_work() as uow:
        return CaseOut.of(ticket, uow.session.get(Order, ticket.order_id) if ticket.order_id else None)


@router.post("/jobs/{name}")
def run_job(name: str, runtime: RuntimeDep, actor: Admin) -> dict[str, object]:
    """Run a scheduled job now (reconcile, auto-renew, lifecycle)."""
    return jobs.run(runtime, name)


@router.get("/promotions", response_model=list[PromotionOut])
def list_promotions(runtime: RuntimeDep, actor: Staff) -> list[PromotionOut]:
    with runtime.unit_of_work() as uow:
        return [PromotionOut.of(p) for p in uow.session.scalars(select(Promotion).order_by(Promotion.id.desc()))]


@router.get("/promotions/current", response_model=list[PromotionOut], tags=["renewal"])
def current_promotions(runtime: RuntimeDep) -> list[PromotionOut]:
    """Promotions running now that apply without a code (codes are not listed)."""
    with runtime.unit_of_work() as uow:
        return [PromotionOut.of(p) for p in promotions.current(uow, uow.now()) if p.code is None]


@router.post("/promotions", response_model=PromotionOut, status_code=status.HTTP_201_CREATED)
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
    with runtime.unit_of_work() as uow:
        return PromotionOut.of(promotions.create(uow, actor, form))


@router.post("/promotions/{promotion_id}/deactivate", response_model=PromotionOut)
def deactivate_promotion(promotion_id: int, runtime: RuntimeDep, actor: Admin) -> PromotionOut:
    if not is_id(promotion_id):
        raise DomainError(ErrorCode.NOT_FOUND)
    with runtime.unit_of_work() as uow:
        return PromotionOut.of(promotions.deactivate(uow, actor, promotion_id))
