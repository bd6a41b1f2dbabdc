"""The sandbox provider's hosted payment page (its side of the fence, not Duckline's API)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from duckline.billing.providers import ProviderError
from duckline.billing.providers.sandbox import SandboxProvider
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money
from duckline.web.deps import PUBLIC, RuntimeDep

router = APIRouter(prefix="/sandbox", include_in_schema=False, dependencies=[PUBLIC])
templates = Jinja2Templates(directory=Path(__file__).parents[1] / "templates")  # billing/templates/sandbox/


def _sandbox(runtime: RuntimeDep) -> SandboxProvider:
    if runtime.sandbox is None:
        raise DomainError(ErrorCode.NOT_FOUND)
    return runtime.sandbox


def _page(request: Request, runtime: RuntimeDep, ref: str, step: str) -> Response:
    try:
        payment = _sandbox(runtime).payment_page(ref)
    except ProviderError as exc:
        raise DomainError(ErrorCode.NOT_FOUND) from exc
    if step == "pay" and payment.status != "requires_payment":
        step = "done"
    return templates.TemplateResponse(
        request,
        "sandbox/checkout.html",
        {
            "amount": Money(payment.amount, payment.currency).format(),
            "status": payment.status,
            "step": step,
            "action": str(request.url.path),
            "return_url": payment.return_url,
        },
    )


@router.get("/checkout/{ref}", response_class=HTMLResponse)
def checkout_page(ref: str, request: Request, runtime: RuntimeDep) -> Response:
    return _page(request, runtime, ref, "pay")


@router.post("/checkout/{ref}")
def pay(
    ref: str,
    runtime: RuntimeDep,
    card_number: Annotated[str, Form(max_length=30)],
    save: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    try:
        next_url = _sandbox(runtime).pay(ref, card_number, save == "1")
    except ProviderError as exc:  # no such payment: the page someone posted to does not exist
        raise DomainError(ErrorCode.NOT_FOUND) from exc
    return RedirectResponse(next_url, status_code=303)


@router.get("/checkout/{ref}/authenticate", response_class=HTMLResponse)
def challenge_page(ref: str, request: Request, runtime: RuntimeDep) -> Response:
    return _page(request, runtime, ref, "authenticate")


@router.post("/checkout/{ref}/authenticate")
def authenticate(ref: str, runtime: RuntimeDep, decision: Annotated[str, Form()]) -> RedirectResponse:
    try:
        next_url = _sandbox(runtime).authenticate(ref, decision == "approve")
    except ProviderError as exc:
        raise DomainError(ErrorCode.NOT_FOUND) from exc
    return RedirectResponse(next_url, status_code=303)
