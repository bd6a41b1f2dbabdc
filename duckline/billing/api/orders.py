"""Renewing: quotes, orders (with an Idempotency-Key), payment attempts, the return URL."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from duckline.accounts.roles import STAFF
from duckline.billing import checkout, orders
from duckline.billing.schemas import OrderIn, OrderOut, QuoteIn, QuoteOut, RetryIn
from duckline.catalog.api import Language
from duckline.core.errors import DomainError, ErrorCode
from duckline.web.deps import RuntimeDep, Subscriber, SubscriberOrStaff
from duckline.web.fields import Cursor, PathId, QueryId
from duckline.web.openapi import errors
from duckline.web.schemas import Page

router = APIRouter(tags=["renewal"])


def return_url(runtime: RuntimeDep) -> str:
    return f"{runtime.settings.base_url}/api/v1/payments/{{payment_id}}/return"


def shown(state: checkout.OrderState, language: str) -> OrderOut:
    return OrderOut.of(state.order, list(state.payments), state.receipt, language)


@router.post("/quotes", response_model=QuoteOut, responses=errors(404, 409))
def quote(body: QuoteIn, runtime: RuntimeDep, account: Subscriber, lang: Language) -> QuoteOut:
    """The exact price before paying: list price, each promotion, total, the period and allowances."""
    q = checkout.quote(runtime.unit_of_work, account, body.line_id, body.plan_code, body.promo_code, lang)
    return QuoteOut.of(q, lang, runtime.payments.methods())


@router.post(
    "/orders",
    response_model=OrderOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "the order this Idempotency-Key already created"}, **errors(404, 409, 503)},
)
def create_order(
    body: OrderIn,
    response: Response,
    runtime: RuntimeDep,
    account: Subscriber,
    lang: Language,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> OrderOut:
    """Order a renewal and start paying. Send a unique Idempotency-Key: repeating the request
    (a double click, a retry after a timeout) returns the same order and never charges twice."""
    if not idempotency_key:
        raise DomainError(ErrorCode.IDEMPOTENCY_KEY_REQUIRED, field="Idempotency-Key")
    request_hash = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    form = orders.OrderForm(
        line_id=body.line_id,
        plan_code=body.plan_code,
        payment_method=body.payment_method,
        promo_code=body.promo_code,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        auto_renew=body.auto_renew,
    )
    state, created = checkout.order_renewal(runtime, account, form, lang, return_url(runtime))
    if not created:
        response.status_code = status.HTTP_200_OK
    return shown(state, lang)


@router.get("/orders", response_model=Page[OrderOut])
def list_orders(
    runtime: RuntimeDep,
    account: SubscriberOrStaff,
    lang: Language,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    account_id: QueryId = None,
) -> Page[OrderOut]:
    owner = account_id if account_id is not None and account.role in STAFF else account.id
    states, next_cursor = checkout.order_page(runtime.unit_of_work, account, owner, cursor, limit)
    return Page[OrderOut](items=[shown(s, lang) for s in states], next_cursor=next_cursor)


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(order_id: PathId, runtime: RuntimeDep, account: SubscriberOrStaff, lang: Language) -> OrderOut:
    return shown(checkout.shown_order(runtime.unit_of_work, account, order_id), lang)


@router.post("/orders/{order_id}/payments", response_model=OrderOut, responses=errors(409, 503))
def retry_payment(
    order_id: PathId, body: RetryIn, runtime: RuntimeDep, account: Subscriber, lang: Language
) -> OrderOut:
    """Pay again after a failed attempt (possibly with another method)."""
    checkout.retry(runtime, account.id, order_id, body.payment_method, lang, return_url(runtime))
    return shown(checkout.shown_order(runtime.unit_of_work, account, order_id), lang)


@router.post("/orders/{order_id}/cancel", response_model=OrderOut, responses=errors(409))
def cancel_order(order_id: PathId, runtime: RuntimeDep, account: Subscriber, lang: Language) -> OrderOut:
    """Give up an unpaid order; its open payment is cancelled at the provider too."""
    checkout.cancel(runtime, account.id, order_id)
    return shown(checkout.shown_order(runtime.unit_of_work, account, order_id), lang)


@router.get("/payments/{payment_id}/return", response_model=OrderOut, responses=errors(503))
def payment_return(payment_id: PathId, runtime: RuntimeDep, account: Subscriber, lang: Language) -> OrderOut:
    """Where the provider sends the payer back: ask the provider now rather than wait for the webhook."""
    return shown(checkout.payment_returned(runtime, account, payment_id), lang)
