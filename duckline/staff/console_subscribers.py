"""Console: look a subscriber up; their account, identity (masked), lines, orders and tickets;
the real-name review; refunds (finance)."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts import identity_review
from duckline.accounts.identity import KycStatus
from duckline.accounts.models import Account
from duckline.billing import refunds
from duckline.core.errors import DomainError
from duckline.runtime import Runtime
from duckline.staff import search as staff_search
from duckline.staff import subscriber_file
from duckline.staff.console_common import (
    FormProblem,
    KycReviewer,
    Refunder,
    Staff,
    page,
    parse_money,
    required_text,
    status_for,
)
from duckline.web.deps import RuntimeDep
from duckline.web.portal.rendering import check_csrf, redirect

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form(max_length=1000)]


@router.get("/console/subscribers")
def search(request: Request, runtime: RuntimeDep, actor: Staff, q: str = "") -> Response:
    query = q.strip()[: staff_search.MAX_QUERY]
    results = subscriber_file.find(runtime.unit_of_work, actor, query)
    return page(request, runtime, actor, "subscribers.html", q=query, results=results)


def _detail(
    request: Request,
    runtime: Runtime,
    actor: Account,
    account_id: int,
    failure: DomainError | FormProblem | None = None,
    **form: Any,
) -> Response:
    try:
        shown = subscriber_file.subscriber_file(runtime.unit_of_work, actor, account_id)
    except DomainError as error:
        return page(request, runtime, actor, "not_found.html", status_for(error))
    return page(
        request,
        runtime,
        actor,
        "subscriber.html",
        status_for(failure) if failure else 200,
        failure=failure,
        form=form,
        **{f.name: getattr(shown, f.name) for f in fields(shown)},
    )


@router.get("/console/subscribers/{account_id}")
def subscriber(account_id: int, request: Request, runtime: RuntimeDep, actor: Staff) -> Response:
    return _detail(request, runtime, actor, account_id)


@router.post("/console/subscribers/{account_id}/kyc")
def review_identity(
    account_id: int,
    request: Request,
    runtime: RuntimeDep,
    actor: KycReviewer,
    decision: Annotated[str, Form(max_length=20)] = "",
    reason: Text = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Accept or reject the real-name registration; a rejection needs the reason the subscriber sees."""
    check_csrf(request, runtime, csrf_token)
    try:
        if decision not in (KycStatus.VERIFIED.value, KycStatus.REJECTED.value):
            raise FormProblem("decision", "decision")
        status = KycStatus(decision)
        cleaned = required_text(reason, "reason", 300) if status is KycStatus.REJECTED else reason.strip()[:300]
        identity_review.review_subscriber(runtime.unit_of_work, actor, account_id, status, cleaned or None)
    except (DomainError, FormProblem) as failure:
        return _detail(request, runtime, actor, account_id, failure, kyc_decision=decision, kyc_reason=reason)
    return redirect(f"/console/subscribers/{account_id}?done=kyc_{status.value}#identity")


@router.post("/console/orders/{order_id}/refund")
def refund(
    order_id: int,
    request: Request,
    runtime: RuntimeDep,
    actor: Refunder,
    amount: Annotated[str, Form(max_length=30)] = "",
    reason: Text = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Finance: refund (part of) an order to its original payment method; a credit note is issued."""
    check_csrf(request, runtime, csrf_token)
    owner = subscriber_file.order_owner(runtime.unit_of_work, order_id)
    if owner is None:
        return page(request, runtime, actor, "not_found.html", 404)
    account_id, currency = owner.account_id, owner.currency
    try:
        minor = parse_money(amount, currency, "amount") if amount.strip() else None
        if minor == 0:
            raise FormProblem("amount", "amount")
        made = refunds.staff_refund(runtime, actor, order_id, minor, required_text(reason, "reason", 300))
    except (DomainError, FormProblem) as failure:
        return _detail(
            request,
            runtime,
            actor,
            account_id,
            failure,
            refund_order=order_id,
            refund_amount=amount,
            refund_reason=reason,
        )
    done = "refunded" if made.status == "succeeded" else "refund_failed"
    return redirect(f"/console/subscribers/{account_id}?done={done}#order-{order_id}")
