"""Renewing from the portal: choose, see the exact price, pay, the result; bills and receipts.

The pages call the services the API calls (checkout.order_renewal with an idempotency key,
checkout.retry, checkout.refresh, orders.quote, receipt_documents.pdf), through the flows of
billing/paying.py and billing/bills.py, and hold no rules and no transactions of their own.
The payment provider sends the payer back to /payments/{id}/result (checkout fills in the
payment id), which leads to the order's result page. Between the two, the payer is on the
provider's page (a redirect), on our QR page (a wallet's code) or on our card page (Stripe's
Payment Element confirms the intent in the browser, then returns to the same URL).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton
from babel.numbers import format_decimal
from dateutil.relativedelta import relativedelta
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.billing import bills as bills_flows
from duckline.billing import checkout, orders, paying
from duckline.billing.models import Order, Payment, Receipt
from duckline.billing.order_states import MAY_CAPTURE, OrderStatus, PaymentMethod, lapsed
from duckline.billing.schemas import OrderIn
from duckline.catalog.rules import PlanKind
from duckline.core import i18n
from duckline.core.config import Settings
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money
from duckline.core.qr import qr_png
from duckline.runtime import Runtime
from duckline.web import csp
from duckline.web.deps import RuntimeDep
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import check_csrf, error_text, page_language, redirect, render
from duckline.web.portal.session import SignedIn

if TYPE_CHECKING:  # the Stripe SDK is imported only when Stripe is configured (see Runtime)
    from duckline.billing.providers.stripe_card import StripeJs

router = APIRouter(include_in_schema=False)

GB, MB = 1024**3, 1024**2
OPEN = paying.OPEN
DONE = (OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED)
CHART_MONTHS, CHART_MIN_MONTHS = 12, 6
# The fields a renewal form has; any other field an error names is shown at the top of the page.
FORM_FIELDS = ("plan_code", "promo_code", "payment_method")
# Shown beside the price (which stays on the page): automatic renewal asked for with a wallet.
AUTO_RENEW_FIELD = "auto_renew"


def return_url(runtime: Runtime) -> str:
    """Where the provider sends the payer back. checkout fills in {payment_id} only; the page
    there finds the order from the payment."""
    return f"{runtime.settings.base_url}/payments/{{payment_id}}/result"


METHOD_ORDER = (PaymentMethod.CARD, PaymentMethod.ALIPAY, PaymentMethod.WECHATPAY)
# The Payment Element in the page's language (Stripe's locale codes).
STRIPE_LOCALES = {"en": "en", "zh_Hant": "zh-HK", "zh_Hans": "zh"}


def payment_methods(runtime: Runtime) -> list[str]:
    """Card, Alipay, WeChat Pay (those configured, card first); never the sandbox's internal method."""
    available = set(runtime.payments.methods())
    return [m.value for m in METHOD_ORDER if m in available]


def provider_origins(settings: Settings) -> list[str]:
    """Origins a paying form's answer may redirect the browser to: our own base URL (the
    sandbox's hosted page) and the Alipay gateway when Alipay is live. (Stripe answers with a
    client secret and WeChat Pay with a QR code: neither redirects.)"""
    urls = [settings.base_url] + ([settings.alipay_gateway] if settings.alipay_provider == "alipay" else [])
    origins = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            origins.append(f"{parts.scheme}://{parts.netloc}")
    return list(dict.fromkeys(origins))


def allow_provider_redirects(response: Response, runtime: Runtime) -> Response:
    """Browsers check the redirect that answers a form against the CSP form-action of the page
    that holds the form, so a page with a paying form names the providers' origins there."""
    response.headers["Content-Security-Policy"] = csp.policy({"form-action": provider_origins(runtime.settings)})
    return response


def allow_stripe_js(response: Response, stripe_js: StripeJs) -> Response:
    """The card page runs Stripe.js: its script, its frames (the Payment Element, 3-D Secure)
    and its API calls are allowed there, and on no other page."""
    response.headers["Content-Security-Policy"] = csp.policy(stripe_js.csp_sources())
    return response


def new_key() -> str:
    """An idempotency key for one rendered order form: submitting it twice makes one order."""
    return secrets.token_urlsafe(24)


def quantity(language: str) -> Callable[[str, int], tuple[str, str]]:
    """An allowance in human units: (number, unit) where unit is minutes, sms, GB or MB."""
    locale = i18n.babel_locale(language)

    def amount(unit: str, value: int) -> tuple[str, str]:
        unit = str(unit)
        if unit == "voice_seconds":
            return format_decimal(value // 60, locale=locale), "minutes"
        if unit == "sms":
            return format_decimal(value, locale=locale), "sms"
        if value >= GB:
            return format_decimal(round(value / GB, 1), locale=locale), "GB"
        return format_decimal(round(value / MB, 1), locale=locale), "MB"

    return amount


# --- choosing and quoting ------------------------------------------------------------------------


@dataclass
class Choice:
    plan: str = ""
    promo: str = ""
    method: str = ""


def _renew_context(form: paying.RenewalForm, choice: Choice, language: str) -> dict[str, Any]:
    """The line, the catalogue in three groups, current automatic promotions, and — when asked —
    the exact quote (or the errors that stop it, by field)."""
    line, plans = form.line, form.plans
    choice.plan = form.chosen_plan  # the same plan again is ticked on arrival
    context: dict[str, Any] = {
        "line": line,
        "current_plan": form.current_plan,
        "same_plans": [p for p in plans if p.kind is PlanKind.PLAN and p.id == line.plan_id],
        "other_plans": [p for p in plans if p.kind is PlanKind.PLAN and p.id != line.plan_id],
        "addon_plans": [p for p in plans if p.kind is PlanKind.ADDON],
        "allowances": form.allowances,
        "plan_names": {p.code: p.names.get(language) or p.names["en"] for p in plans},
        "promotions": list(form.promotions),
        "quote": form.quote,
        "field_errors": {},
        "error": None,
        "status": 200,
    }
    if form.quote_error is not None:
        _place_error(context, language, form.quote_error)
    return context


def _place_error(context: dict[str, Any], language: str, exc: DomainError) -> None:
    context["status"] = STATUS[exc.error.kind]
    if exc.field in FORM_FIELDS or exc.field == AUTO_RENEW_FIELD:
        context["field_errors"][exc.field] = error_text(language, exc)
    else:
        context["error"] = error_text(language, exc)


def _render_renew(
    request: Request,
    runtime: Runtime,
    account: Account,
    line_id: int,
    choice: Choice,
    quoting: bool,
    failure: DomainError | None = None,
) -> Response:
    language = page_language(request, account)
    methods = payment_methods(runtime)
    if choice.method not in methods:
        choice.method = methods[0]
    try:
        form = paying.renewal_form(runtime.unit_of_work, account, line_id, choice.plan, choice.promo, language, quoting)
    except DomainError as exc:
        return _missing(request, runtime, account, exc)
    context = _renew_context(form, choice, language)
    if failure is not None:
        if failure.field in FORM_FIELDS:
            context["quote"] = None
        _place_error(context, language, failure)
    page = render(
        request,
        runtime,
        "portal/renew.html",
        account,
        status_code=context.pop("status"),
        choice=choice,
        methods=methods,
        idempotency_key=new_key(),
        quantity=quantity(language),
        **context,
    )
    return allow_provider_redirects(page, runtime)


@router.get("/lines/{line_id}/renew")
def renew_page(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    line_id: int,
    plan: str = "",
    promo: str = "",
    method: str = "",
) -> Response:
    """Choose a renewal; with ?plan=… (and promo, method) the exact price is shown too."""
    choice = Choice(plan.strip()[:40], promo.strip()[:40], method.strip()[:20])
    return _render_renew(request, runtime, account, line_id, choice, quoting=bool(choice.plan))


@router.post("/lines/{line_id}/renew")
def place_renewal(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    line_id: int,
    plan: Annotated[str, Form(max_length=40)],
    idempotency_key: Annotated[str, Form(min_length=8, max_length=100)],
    method: Annotated[str, Form(max_length=20)] = "card",
    promo: Annotated[str, Form(max_length=40)] = "",
    csrf_token: Annotated[str, Form()] = "",
    auto_renew: Annotated[str | None, Form()] = None,
) -> Response:
    """Order it exactly as POST /api/v1/orders does (same idempotency rules), then go and pay."""
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, account)
    choice = Choice(plan.strip(), promo.strip(), method.strip())
    if choice.method not in payment_methods(runtime):
        failure = DomainError(ErrorCode.PAYMENT_METHOD_UNAVAILABLE, field="payment_method")
        return _render_renew(request, runtime, account, line_id, choice, True, failure)
    body = OrderIn(
        line_id=line_id,
        plan_code=choice.plan,
        promo_code=choice.promo or None,
        payment_method=PaymentMethod(choice.method),
        auto_renew=auto_renew == "1",
    )
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
    try:
        state, _ = checkout.order_renewal(runtime, account, form, language, return_url(runtime))
    except DomainError as exc:
        return _render_renew(request, runtime, account, line_id, choice, True, exc)
    latest = state.payments[-1] if state.payments else None  # the attempt this order was sent with
    if latest is None:
        return _step(state.order.id, None, None)
    return _step(state.order.id, latest.id, latest.next_action if latest.status in OPEN else None)


def _next_step(runtime: Runtime, order_id: int, payment_id: int | None) -> Response:
    """Where the payer goes now: the provider's page, our QR or card page, or the result."""
    action = paying.next_action(runtime.unit_of_work, payment_id) if payment_id is not None else None
    return _step(order_id, payment_id, action)


def _step(order_id: int, payment_id: int | None, action: dict[str, Any] | None) -> Response:
    if action and action.get("type") == "redirect" and action.get("url"):
        return redirect(str(action["url"]))
    if action and action.get("type") == "qr" and action.get("code_url"):
        return redirect(f"/orders/{order_id}/pay?payment={payment_id}")
    if _is_card_confirmation(action):
        return redirect(f"/orders/{order_id}/card?payment={payment_id}")
    suffix = f"?payment={payment_id}" if payment_id is not None else ""
    return redirect(f"/orders/{order_id}/result{suffix}")


# --- back from the provider: the result ----------------------------------------------------------


@router.get("/payments/{payment_id}/result")
def payment_return(request: Request, runtime: RuntimeDep, account: SignedIn, payment_id: int) -> Response:
    """The provider's return URL: on to the order's result page."""
    try:
        order_id = paying.order_of_payment(runtime.unit_of_work, account, payment_id)
    except DomainError as exc:
        return _missing(request, runtime, account, exc)
    return redirect(f"/orders/{order_id}/result?payment={payment_id}")


def _is_card_confirmation(action: dict[str, Any] | None) -> bool:
    """An attempt the payer confirms on our card page with Stripe.js (its client secret)."""
    return bool(action and action.get("type") == "stripe_client_secret" and action.get("client_secret"))


def _shown_status(order: Order, now: datetime) -> str:
    """The order's status as the subscriber reads it: past its time to pay, no longer waiting."""
    return "not_completed" if lapsed(order.status, order.pay_by, now) else order.status.value


def _result_state(order: Order, receipt: Receipt | None, latest: Payment | None, now: datetime) -> str:
    if order.status in DONE and receipt is not None:
        return "success"
    if order.status is OrderStatus.FAILED and (latest is None or latest.status not in MAY_CAPTURE):
        return "failed"  # the provider said no: "nothing was charged" is true
    if order.status is OrderStatus.PAID:
        return "paid"  # money taken, not applied (yet): reconciliation and support take over
    if order.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REFUNDED):
        return "closed"
    if lapsed(order.status, order.pay_by, now):
        return "lapsed"  # abandoned on the provider's page: nothing more to wait for, no reloading
    return "processing"


def _render_result(
    request: Request,
    runtime: Runtime,
    account: Account,
    order_id: int,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """The order's state; the retry form and the details follow its latest payment attempt."""
    shown = paying.order_result(runtime.unit_of_work, account, order_id)
    order, latest, receipt, line = shown.order, shown.latest, shown.receipt, shown.line
    now = runtime.clock.now()
    state = _result_state(order, receipt, latest, now)
    methods = payment_methods(runtime)
    previous = latest.method.value if latest is not None else "card"
    action = latest.next_action if latest is not None and latest.status in OPEN else None
    page = render(
        request,
        runtime,
        "portal/order_result.html",
        account,
        status_code=status_code,
        order=order,
        latest=latest,
        receipt=receipt,
        line=line,
        state=state,
        shown_status=_shown_status(order, now),
        methods=methods,
        retry_method=previous if previous in methods else methods[0],
        continue_url=action.get("url") if action and action.get("type") == "redirect" else None,
        continue_qr=bool(action and action.get("type") == "qr"),
        continue_card=runtime.stripe_js is not None and _is_card_confirmation(action),
        error=error,
    )
    return allow_provider_redirects(page, runtime)


@router.get("/orders/{order_id}/result")
def order_result(
    request: Request, runtime: RuntimeDep, account: SignedIn, order_id: int, payment: int | None = None
) -> Response:
    """Success (receipt, new expiry), failure (why, and try again), or processing (reloads)."""
    try:
        paying.ask_open_attempt(runtime, account, order_id, payment)
        return _render_result(request, runtime, account, order_id)
    except DomainError as exc:
        return _missing(request, runtime, account, exc)


@router.post("/orders/{order_id}/retry")
def retry_payment(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    order_id: int,
    method: Annotated[str, Form(max_length=20)] = "card",
    attempt: Annotated[int | None, Form()] = None,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """A new attempt (possibly with another method), as POST /api/v1/orders/{id}/payments.
    The form names the attempt it saw fail: sent twice, the second finds the new attempt open
    and goes to it instead of starting a third."""
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, account)
    try:
        latest = paying.latest_attempt(runtime.unit_of_work, account, order_id)
    except DomainError as exc:
        return _missing(request, runtime, account, exc)
    if latest is not None and attempt is not None and latest.id != attempt and latest.status in OPEN:
        return _next_step(runtime, order_id, latest.id)
    try:
        if method not in payment_methods(runtime):
            raise DomainError(ErrorCode.PAYMENT_METHOD_UNAVAILABLE, field="payment_method")
        payment_id = checkout.retry(runtime, account.id, order_id, PaymentMethod(method), language, return_url(runtime))
    except DomainError as exc:
        return _render_result(request, runtime, account, order_id, error_text(language, exc), STATUS[exc.error.kind])
    return _next_step(runtime, order_id, payment_id)


def _to_result(order_id: int, attempt: Payment | None) -> Response:
    return redirect(f"/orders/{order_id}/result" + (f"?payment={attempt.id}" if attempt else ""))


@router.get("/orders/{order_id}/pay")
def qr_payment(
    request: Request, runtime: RuntimeDep, account: SignedIn, order_id: int, payment: int | None = None
) -> Response:
    """A wallet that pays by scanning (WeChat Pay Native): the code, until the payment settles."""
    try:
        step = paying.payer_step(runtime, account, order_id, payment)
    except DomainError as exc:
        return _missing(request, runtime, account, exc)
    order, attempt, action = step.order, step.attempt, step.action
    if attempt is None or not action or action.get("type") != "qr" or not action.get("code_url"):
        return _to_result(order_id, attempt)
    image = base64.b64encode(qr_png(str(action["code_url"]), scale=5)).decode()
    return render(
        request,
        runtime,
        "portal/pay_qr.html",
        account,
        order=order,
        payment=attempt,
        qr_data_uri=f"data:image/png;base64,{image}",
    )


@router.get("/orders/{order_id}/card")
def card_payment(
    request: Request, runtime: RuntimeDep, account: SignedIn, order_id: int, payment: int | None = None
) -> Response:
    """A card payment the payer confirms here (Stripe's Payment Element), while the attempt is
    open; Stripe then sends the browser to our return URL. Anything else goes to the result."""
    try:
        step = paying.payer_step(runtime, account, order_id, payment)
    except DomainError as exc:
        return _missing(request, runtime, account, exc)
    order, attempt, action = step.order, step.attempt, step.action
    stripe_js = runtime.stripe_js
    if attempt is None or stripe_js is None or action is None or not _is_card_confirmation(action):
        return _to_result(order_id, attempt)
    page = render(
        request,
        runtime,
        "portal/pay_card.html",
        account,
        order=order,
        payment=attempt,
        client_secret=str(action["client_secret"]),
        stripe_js=stripe_js,
        stripe_locale=STRIPE_LOCALES.get(page_language(request, account), "auto"),
        return_to=return_url(runtime).format(payment_id=attempt.id),
    )
    page.headers["Cache-Control"] = "private, no-store"  # the client secret is for this visit only
    return allow_stripe_js(page, stripe_js)


# --- bills and receipts --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    title: str
    x: float
    y: float
    width: float
    height: float


CHART_WIDTH, CHART_HEIGHT, CHART_TOP, CHART_BOTTOM = 320, 190, 18, 160


def month_chart(months: list[dict[str, Any]], language: str, money: Any) -> dict[str, Any] | None:
    """Net spending per month as bars, oldest to newest, the last CHART_MONTHS months up to now.
    Coordinates are computed here; the template only places them (no inline styles)."""
    if not months:
        return None
    locale = i18n.babel_locale(language)
    slots = len(months)
    step = CHART_WIDTH / slots
    peak = max(max(m["net"] for m in months), 1)
    bars = []
    for index, month in enumerate(months):
        height = round((CHART_BOTTOM - CHART_TOP) * max(month["net"], 0) / peak, 1)
        label = format_skeleton("MMM", month["start"], locale=locale)
        title = f"{format_skeleton('yMMM', month['start'], locale=locale)}: {money(month['net'], month['currency'])}"
        bars.append(
            Bar(
                label=label,
                title=title,
                x=round(index * step + step * 0.2, 1),
                y=round(CHART_BOTTOM - height, 1),
                width=round(step * 0.6, 1),
                height=height,
            )
        )
    return {
        "bars": bars,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "baseline": CHART_BOTTOM,
        "top": CHART_TOP,
        "peak": money(peak, months[0]["currency"]),
        "label_y": CHART_BOTTOM + 16,
    }


def _months(runtime: Runtime, account: Account) -> list[dict[str, Any]]:
    """As GET /api/v1/billing/months, newest first, with each month's first day."""
    rows = bills_flows.spending_by_month(runtime.unit_of_work, account, runtime.settings.display_timezone)
    return [
        {
            "month": r.month,
            "start": date(int(r.month[:4]), int(r.month[5:7]), 1),
            "currency": r.currency,
            "paid": r.paid,
            "refunded": r.refunded,
            "net": r.net,
        }
        for r in rows
    ]


def _chart_months(months: list[dict[str, Any]], today: date) -> list[dict[str, Any]]:
    """The chart's months: from the oldest with spending (at most a year back, at least half a
    year so one month is not one huge bar) to this month, empty months included, in the main
    currency."""
    if not months:
        return []
    currency = months[0]["currency"]
    by_month = {m["month"]: m for m in months if m["currency"] == currency}
    this_month = today.replace(day=1)
    oldest = min(m["start"] for m in by_month.values())
    first = max(oldest, this_month - relativedelta(months=CHART_MONTHS - 1))
    first = min(first, this_month - relativedelta(months=CHART_MIN_MONTHS - 1))
    out, cursor = [], first
    while cursor <= this_month:
        key = cursor.strftime("%Y-%m")
        found = by_month.get(key)
        out.append(found or {"month": key, "start": cursor, "currency": currency, "paid": 0, "refunded": 0, "net": 0})
        cursor += relativedelta(months=1)
    return out


@router.get("/bills")
def bills(request: Request, runtime: RuntimeDep, account: SignedIn) -> Response:
    """Orders, receipts and credit notes (PDF), refunds, spending per month."""
    language = page_language(request, account)
    shown = bills_flows.bills(runtime.unit_of_work, account)
    months = _months(runtime, account)
    tz = ZoneInfo(account.timezone or runtime.settings.display_timezone)
    today = runtime.clock.now().astimezone(tz).date()
    locale = i18n.babel_locale(language)

    def money(amount: int, currency: str = "HKD") -> str:
        return Money(amount, currency).format(locale)

    return render(
        request,
        runtime,
        "portal/bills.html",
        account,
        orders=[(o, msisdn, _shown_status(o, runtime.clock.now())) for o, msisdn in shown.orders],
        receipts=shown.receipts,
        refunds=shown.refunds,
        months=months,
        month_label=lambda d: format_skeleton("yMMM", d, locale=locale),
        chart=month_chart(_chart_months(months, today), language, money),
    )


@router.get("/bills/receipts/{receipt_id:int}.pdf")
def receipt_pdf(request: Request, runtime: RuntimeDep, account: SignedIn, receipt_id: int) -> Response:
    """A receipt or credit note as PDF, in the page's language. Only the account's own."""
    language = page_language(request, account)
    try:
        document = bills_flows.own_receipt_pdf(runtime.unit_of_work, account, receipt_id, language)
    except DomainError as exc:
        return _missing(request, runtime, account, exc)
    return Response(
        document.pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{document.name}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )


def _missing(request: Request, runtime: Runtime, account: Account, exc: DomainError) -> Response:
    """A line or order that is not the viewer's looks exactly like one that does not exist."""
    language = page_language(request, account)
    return render(
        request,
        runtime,
        "portal/renew_missing.html",
        account,
        status_code=STATUS[exc.error.kind],
        message=error_text(language, exc),
    )


__all__ = ["router"]
