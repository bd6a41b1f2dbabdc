"""Bills: receipts (and their PDF), refunds, spending by month; staff revenue and refunds."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Response

from duckline.accounts.models import Account
from duckline.accounts.roles import STAFF, Role
from duckline.billing import bills, refunds, reports
from duckline.billing.schemas import MonthTotal, ReceiptOut, RefundIn, RefundOut
from duckline.catalog.api import Language
from duckline.core.errors import DomainError, ErrorCode
from duckline.web.deps import RuntimeDep, Subscriber, SubscriberOrStaff, require_roles
from duckline.web.fields import Cursor, Day, PathId
from duckline.web.openapi import errors
from duckline.web.schemas import Page

router = APIRouter(tags=["billing"])
Finance = Annotated[Account, Depends(require_roles({Role.FINANCE, Role.ADMIN}))]


@router.get("/receipts", response_model=Page[ReceiptOut])
def list_receipts(
    runtime: RuntimeDep,
    account: Subscriber,
    lang: Language,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[ReceiptOut]:
    """Receipts and credit notes, newest first."""
    rows, next_cursor = bills.receipt_page(runtime.unit_of_work, account, cursor, limit)
    return Page[ReceiptOut](items=[ReceiptOut.of(r, lang) for r in rows], next_cursor=next_cursor)


@router.get("/receipts/{receipt_id}", response_model=ReceiptOut)
def get_receipt(receipt_id: PathId, runtime: RuntimeDep, account: SubscriberOrStaff, lang: Language) -> ReceiptOut:
    return ReceiptOut.of(bills.receipt(runtime.unit_of_work, account, receipt_id), lang)


@router.get(
    "/receipts/{receipt_id}/pdf", response_class=Response, responses={200: {"content": {"application/pdf": {}}}}
)
def receipt_pdf(receipt_id: PathId, runtime: RuntimeDep, account: SubscriberOrStaff, lang: Language) -> Response:
    """The receipt as PDF, in the subscriber's language (Chinese text embedded in the font)."""
    found = bills.receipt_file(runtime.unit_of_work, account, receipt_id, lang)
    return Response(
        found.pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{found.name}.pdf"',
            "Cache-Control": "private",
        },
    )


@router.get("/billing/months", response_model=list[MonthTotal])
def spending_by_month(runtime: RuntimeDep, account: Subscriber) -> list[MonthTotal]:
    """Paid, refunded and net per month (Hong Kong calendar), newest first."""
    months = bills.spending_by_month(runtime.unit_of_work, account, runtime.settings.display_timezone)
    return [MonthTotal(month=m.month, currency=m.currency, paid=m.paid, refunded=m.refunded, net=m.net) for m in months]


@router.post("/orders/{order_id}/refunds", response_model=RefundOut, responses=errors(409, 503))
def refund_order(order_id: PathId, body: RefundIn, runtime: RuntimeDep, actor: Finance) -> RefundOut:
    """Finance: refund (part of) an order to its original payment method; a credit note is issued."""
    row = refunds.staff_refund(runtime, actor, order_id, body.amount, body.reason)
    return RefundOut(
        id=row.id, order_id=row.order_id, amount=row.amount, currency=row.currency, status=row.status, reason=row.reason
    )


@router.get("/reports/revenue")
def revenue(
    runtime: RuntimeDep,
    actor: Annotated[Account, Depends(require_roles(STAFF))],
    by: Annotated[str, Query(pattern="^(day|plan|method)$")] = "day",
    since: Annotated[Day | None, Query()] = None,
    until: Annotated[Day | None, Query()] = None,
) -> list[dict[str, object]]:
    """Revenue (paid minus refunded) by day, plan or payment method, over [since, until] (HK dates);
    each order counted once. `captured` is all the providers captured; `held`, money captured beyond
    an order's price (a second capture) and not yet refunded, is the subscriber's, not revenue."""
    tz = ZoneInfo(runtime.settings.display_timezone)
    today = runtime.clock.now().astimezone(tz).date()
    until = until or today
    since = since or until - timedelta(days=30)
    if since > until:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="since")
    start = datetime.combine(since, time(), tz)
    end = datetime.combine(until + timedelta(days=1), time(), tz)
    return reports.revenue_between(runtime.unit_of_work, by, start, end, tz)
