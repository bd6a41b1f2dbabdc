"""Console: the reconciliation queue (apply, refund or close a case with a reason), running the
reconciliation job and the number pool (the audit log is in console_audit)."""

from __future__ import annotations

import re
from typing import Annotated, Any, cast

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from duckline.adapters.db.tables import Account, Line, Order, Payment, Ticket
from duckline.adapters.db.types import is_id
from duckline.domain.orders import OrderStatus
from duckline.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.services import audit, jobs, numbers, reconciliation, refunds, support_desk
from duckline.web.deps import RuntimeDep
from duckline.web.edge import BULK
from duckline.web.portal import console_audit
from duckline.web.portal.console_common import (
    REFUNDERS,
    Admin,
    FormProblem,
    PoolManager,
    Staff,
    page,
    required_text,
    status_for,
)
from duckline.web.portal.rendering import check_csrf, redirect

router = APIRouter(include_in_schema=False)
router.include_router(console_audit.router)
Token = Annotated[str, Form()]
CASE_KINDS = ("reconciliation", "payment_mismatch")
ACTIONS = ("apply", "refund", "close")
RESOLVED_SHOWN = 50
MAX_IMPORT_CHARS = 1_000_000  # about 60,000 numbers; the API takes 100,000 per call
JOB_COUNTS = ("applied", "expired", "refunded", "unreachable")


def _category(ticket: Ticket, order: Order | None) -> str:
    """How the page groups a case: amount mismatch, paid but not applied, or a stuck payment."""
    if ticket.kind == "payment_mismatch":
        return "mismatch"
    if order is not None and order.status is OrderStatus.PAID:
        return "paid_not_applied"
    return "stuck"


def _cases(runtime: Runtime) -> dict[str, Any]:
    with runtime.unit_of_work() as uow:
        s = uow.session
        open_cases = s.scalars(
            select(Ticket).where(Ticket.kind.in_(CASE_KINDS), Ticket.status == "open").order_by(Ticket.id)
        ).all()
        resolved = s.scalars(
            select(Ticket)
            .where(Ticket.kind.in_(CASE_KINDS), Ticket.status == "resolved")
            .order_by(Ticket.id.desc())
            .limit(RESOLVED_SHOWN)
        ).all()
        order_ids = {t.order_id for t in [*open_cases, *resolved] if t.order_id}
        orders = {o.id: o for o in s.scalars(select(Order).where(Order.id.in_(order_ids)))} if order_ids else {}
        payments: dict[int, list[Payment]] = {order_id: [] for order_id in orders}
        for payment in s.scalars(select(Payment).where(Payment.order_id.in_(order_ids)).order_by(Payment.id)):
            payments[payment.order_id].append(payment)
        line_ids = {o.line_id for o in orders.values()}
        msisdns = dict(s.execute(select(Line.id, Line.msisdn).where(Line.id.in_(line_ids))).all()) if line_ids else {}
        account_ids = {t.account_id for t in open_cases if t.account_id}
        phones = (
            dict(s.execute(select(Account.id, Account.phone).where(Account.id.in_(account_ids))).all())
            if account_ids
            else {}
        )
        # A refund is offered when the order can be refunded, or when money was captured that the
        # order does not account for (a wrong amount, a second capture): the service refunds that.
        refundable = {
            o.id
            for o in orders.values()
            if o.status in refunds.REFUNDABLE or refunds.stray_payment(uow, o.id) is not None
        }
        return {
            "refundable": refundable,
            "open_cases": [
                (t, orders.get(t.order_id or 0), _category(t, orders.get(t.order_id or 0))) for t in open_cases
            ],
            "resolved_cases": [(t, orders.get(t.order_id or 0)) for t in resolved],
            "payments": payments,
            "msisdns": {order_id: msisdns.get(o.line_id) for order_id, o in orders.items()},
            "phones": phones,
            "mentions": support_desk.mentioning(uow, cases=[t.id for t in [*open_cases, *resolved]]),
        }


def _reconciliation_page(
    request: Request,
    runtime: Runtime,
    actor: Account,
    failure: DomainError | FormProblem | None = None,
    **form: Any,
) -> Response:
    job = {name: _count(request.query_params.get(name)) for name in JOB_COUNTS}
    return page(
        request,
        runtime,
        actor,
        "reconciliation.html",
        status_for(failure) if failure else 200,
        failure=failure,
        job=job,
        form=form,
        **_cases(runtime),
    )


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() and len(value) < 10 else 0


@router.get("/console/reconciliation")
def cases(request: Request, runtime: RuntimeDep, actor: Staff) -> Response:
    return _reconciliation_page(request, runtime, actor)


@router.post("/console/reconciliation/{ticket_id}/resolve")
def resolve(
    ticket_id: int,
    request: Request,
    runtime: RuntimeDep,
    actor: Staff,
    action: Annotated[str, Form(max_length=10)] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Token = "",
) -> Response:
    """Apply the paid renewal, refund it to the original method, or close the case; a reason is required."""
    check_csrf(request, runtime, csrf_token)
    try:
        if action not in ACTIONS:
            raise FormProblem("action", "action")
        if action == "refund" and actor.role not in REFUNDERS:
            raise DomainError(ErrorCode.FORBIDDEN)
        cleaned = required_text(reason, "reason", 500)
        with runtime.unit_of_work() as uow:
            ticket = uow.session.get(Ticket, ticket_id) if is_id(ticket_id) else None
            if ticket is None or ticket.kind not in CASE_KINDS:
                raise DomainError(ErrorCode.NOT_FOUND)
            if ticket.status != "open":  # a settled case keeps its first resolution
                raise FormProblem("already_resolved", status=409)
        reconciliation.resolve(runtime, actor, ticket_id, action, cleaned)
    except (DomainError, FormProblem) as failure:
        return _reconciliation_page(request, runtime, actor, failure, case_id=ticket_id, action=action, reason=reason)
    return redirect(f"/console/reconciliation?done=case_{action}#resolved")


@router.post("/console/jobs/reconcile")
def run_reconciliation(request: Request, runtime: RuntimeDep, actor: Admin, csrf_token: Token = "") -> Response:
    """Run the reconciliation job now (it also runs on its schedule)."""
    check_csrf(request, runtime, csrf_token)
    report = jobs.run(runtime, "reconcile")
    counts = {name: len(cast(list[int], report.get(name) or [])) for name in JOB_COUNTS}
    with runtime.unit_of_work() as uow:
        audit.record(uow, actor.id, "job.run", "job:reconcile", **counts)
    query = "&".join(f"{name}={n}" for name, n in counts.items())
    return redirect(f"/console/reconciliation?done=reconciled&{query}")


# --- the number pool ------------------------------------------------------------------------------


def _numbers_page(
    request: Request,
    runtime: Runtime,
    actor: Account,
    failure: DomainError | FormProblem | None = None,
    submitted: str = "",
) -> Response:
    with runtime.unit_of_work() as uow:
        summary = numbers.pool_summary(uow)
    return page(
        request,
        runtime,
        actor,
        "numbers.html",
        status_for(failure) if failure else 200,
        failure=failure,
        summary=summary,
        submitted=submitted,
        added=_count(request.query_params.get("added")),
        present=_count(request.query_params.get("present")),
    )


@router.get("/console/numbers")
def pool(request: Request, runtime: RuntimeDep, actor: PoolManager) -> Response:
    return _numbers_page(request, runtime, actor)


@router.post("/console/numbers/import", openapi_extra=BULK)
def import_numbers(
    request: Request,
    runtime: RuntimeDep,
    actor: PoolManager,
    numbers_text: Annotated[str, Form(alias="numbers", max_length=MAX_IMPORT_CHARS)] = "",
    csrf_token: Token = "",
) -> Response:
    """Load numbers into the pool (E.164 or national form); an invalid one rejects the whole list."""
    check_csrf(request, runtime, csrf_token)
    given = [n for n in re.split(r"[\n\r,;\t]+", numbers_text) if n.strip()]
    try:
        if not given:
            raise FormProblem("numbers", "numbers")
        with runtime.unit_of_work() as uow:
            result = numbers.import_numbers(uow, given)
            audit.record(uow, actor.id, "numbers.imported", "pool", added=result.added)
    except (DomainError, FormProblem) as failure:
        return _numbers_page(request, runtime, actor, failure, numbers_text)
    return redirect(f"/console/numbers?done=numbers_imported&added={result.added}&present={result.already_present}")
