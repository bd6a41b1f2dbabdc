"""Console: look a subscriber up; their account, identity (masked), lines, orders and tickets;
the real-name review; refunds (finance)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from duckline.adapters.db.tables import (
    Account,
    CreditSession,
    Line,
    Order,
    Payment,
    Person,
    Plan,
    Receipt,
    Refund,
    Ticket,
)
from duckline.adapters.db.types import is_id
from duckline.domain.identity import KycStatus
from duckline.domain.roles import Role
from duckline.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.services import (
    account_closure,
    accounts,
    identity_documents,
    quota,
    refunds,
    staff_search,
    support_desk,
)
from duckline.web.deps import RuntimeDep
from duckline.web.portal.console_common import (
    FormProblem,
    KycReviewer,
    Refunder,
    Staff,
    page,
    parse_money,
    required_text,
    status_for,
)
from duckline.web.portal.rendering import check_csrf, redirect

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form(max_length=1000)]
ORDERS_SHOWN = 50


@router.get("/console/subscribers")
def search(request: Request, runtime: RuntimeDep, actor: Staff, q: str = "") -> Response:
    query = q.strip()[: staff_search.MAX_QUERY]
    with runtime.unit_of_work() as uow:
        results = staff_search.search(uow, query) if query else []
    return page(request, runtime, actor, "subscribers.html", q=query, results=results)


def _subscriber(runtime: Runtime, account_id: int) -> dict[str, Any]:
    """Everything the subscriber page shows; the identity number only in its masked form."""
    with runtime.unit_of_work() as uow:
        s = uow.session
        account = s.get(Account, account_id) if is_id(account_id) else None
        if account is None or account.role is not Role.SUBSCRIBER:
            raise DomainError(ErrorCode.NOT_FOUND)
        person = s.get(Person, account.person_id) if account.person_id else None
        lines = s.scalars(select(Line).where(Line.account_id == account.id).order_by(Line.id)).all()
        orders = s.scalars(
            select(Order).where(Order.account_id == account.id).order_by(Order.id.desc()).limit(ORDERS_SHOWN)
        ).all()
        order_ids = [o.id for o in orders]
        plan_ids = {line.plan_id for line in lines if line.plan_id} | {o.plan_id for o in orders}
        plans = {p.id: p for p in s.scalars(select(Plan).where(Plan.id.in_(plan_ids)))} if plan_ids else {}
        payments: dict[int, list[Payment]] = {order_id: [] for order_id in order_ids}
        for payment in s.scalars(select(Payment).where(Payment.order_id.in_(order_ids)).order_by(Payment.id)):
            payments[payment.order_id].append(payment)
        order_refunds: dict[int, list[Refund]] = {order_id: [] for order_id in order_ids}
        for row in s.scalars(select(Refund).where(Refund.order_id.in_(order_ids)).order_by(Refund.id)):
            order_refunds[row.order_id].append(row)
        receipts: dict[int, list[Receipt]] = {order_id: [] for order_id in order_ids}
        for receipt in s.scalars(select(Receipt).where(Receipt.order_id.in_(order_ids)).order_by(Receipt.id)):
            receipts[receipt.order_id].append(receipt)
        tickets = s.scalars(select(Ticket).where(Ticket.account_id == account.id).order_by(Ticket.id.desc())).all()
        # What the network holds right now: open credit-control sessions whose grant still holds.
        sessions = s.scalars(
            select(CreditSession)
            .where(
                CreditSession.line_id.in_([line.id for line in lines]),
                CreditSession.status == quota.OPEN,
                CreditSession.expires_at > uow.now(),
            )
            .order_by(CreditSession.id)
        ).all()
        return {
            "subscriber": account,
            "closure": account_closure.closure_of(uow, account.id),
            "person": person,
            "document": identity_documents.info(uow, person.id) if person else None,  # never its bytes
            "lines": lines,
            "orders": orders,
            "plans": plans,
            "payments": payments,
            "refunds": order_refunds,
            "receipts": receipts,
            "tickets": tickets,
            "mentions": support_desk.mentioning(uow, order_ids, [p.id for rows in payments.values() for p in rows]),
            "credit_sessions": sessions,
            "msisdns": {line.id: line.msisdn for line in lines},
            "refundable": {o.id for o in orders if o.status in refunds.REFUNDABLE},
        }


def _detail(
    request: Request,
    runtime: Runtime,
    actor: Account,
    account_id: int,
    failure: DomainError | FormProblem | None = None,
    **form: Any,
) -> Response:
    try:
        context = _subscriber(runtime, account_id)
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
        **context,
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
        with runtime.unit_of_work() as uow:
            account = uow.session.get(Account, account_id) if is_id(account_id) else None
            if account is None or account.person_id is None or account.role is not Role.SUBSCRIBER:
                raise DomainError(ErrorCode.NOT_FOUND)
            accounts.set_kyc(uow, actor, account.person_id, status, cleaned or None)
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
    with runtime.unit_of_work() as uow:
        order = uow.session.get(Order, order_id) if is_id(order_id) else None
        if order is None:
            return page(request, runtime, actor, "not_found.html", 404)
        account_id, currency = order.account_id, order.currency
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
