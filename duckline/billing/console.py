"""Console: the reconciliation queue (apply, refund or close a case with a reason), running the
reconciliation job and the number pool (the audit log is in console_audit)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.billing import reconciliation
from duckline.billing.models import Order
from duckline.billing.order_states import OrderStatus
from duckline.core import jobs
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines import numbers
from duckline.runtime import Runtime
from duckline.staff import console_audit
from duckline.staff.console_common import (
    REFUNDERS,
    Admin,
    FormProblem,
    PoolManager,
    Staff,
    page,
    required_text,
    status_for,
)
from duckline.support.models import Ticket
from duckline.web.deps import RuntimeDep
from duckline.web.edge import BULK
from duckline.web.portal.rendering import check_csrf, redirect

router = APIRouter(include_in_schema=False)
router.include_router(console_audit.router)
Token = Annotated[str, Form()]
ACTIONS = ("apply", "refund", "close")
MAX_IMPORT_CHARS = 1_000_000  # about 60,000 numbers; the API takes 100,000 per call
JOB_COUNTS = jobs.RECONCILE_COUNTS


def _category(ticket: Ticket, order: Order | None) -> str:
    """How the page groups a case: amount mismatch, paid but not applied, or a stuck payment."""
    if ticket.kind == "payment_mismatch":
        return "mismatch"
    if order is not None and order.status is OrderStatus.PAID:
        return "paid_not_applied"
    return "stuck"


def _cases(runtime: Runtime) -> dict[str, Any]:
    queue = reconciliation.queue(runtime.unit_of_work)
    return {
        "refundable": queue.refundable,
        "open_cases": [(c.ticket, c.order, _category(c.ticket, c.order)) for c in queue.open_cases],
        "resolved_cases": [(c.ticket, c.order) for c in queue.resolved_cases],
        "payments": queue.payments,
        "msisdns": queue.msisdns,
        "phones": queue.phones,
        "mentions": queue.mentions,
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
        reconciliation.settle(runtime, actor, ticket_id, action, cleaned, console=True)
    except (DomainError, FormProblem) as failure:
        if isinstance(failure, DomainError) and failure.error is ErrorCode.CASE_ALREADY_RESOLVED:
            failure = FormProblem("already_resolved", status=409)  # its first resolution stays
        return _reconciliation_page(request, runtime, actor, failure, case_id=ticket_id, action=action, reason=reason)
    return redirect(f"/console/reconciliation?done=case_{action}#resolved")


@router.post("/console/jobs/reconcile")
def run_reconciliation(request: Request, runtime: RuntimeDep, actor: Admin, csrf_token: Token = "") -> Response:
    """Run the reconciliation job now (it also runs on its schedule)."""
    check_csrf(request, runtime, csrf_token)
    counts = jobs.reconcile_now(runtime, actor)
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
    summary = numbers.pool(runtime.unit_of_work)
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
        result = numbers.import_into_pool(runtime.unit_of_work, actor, given)
    except (DomainError, FormProblem) as failure:
        return _numbers_page(request, runtime, actor, failure, numbers_text)
    return redirect(f"/console/numbers?done=numbers_imported&added={result.added}&present={result.already_present}")
