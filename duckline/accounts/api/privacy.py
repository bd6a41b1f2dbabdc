"""The subscriber's own data: saved payment methods (see, remove), a copy of everything held about
them (a PDPO data access request), and closing the account."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from duckline.accounts import closure as account_closure
from duckline.accounts import data_export
from duckline.billing import payment_methods
from duckline.catalog.api import Language
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.web.deps import RuntimeDep, Subscriber, client_address
from duckline.web.downloads import download
from duckline.web.fields import PathId
from duckline.web.openapi import errors

router = APIRouter(prefix="/me", tags=["account"])


class SavedMethodOut(BaseModel):
    """Never a card number: Duckline holds none. The brand (or wallet), the last four, the expiry."""

    id: int
    method: str
    brand: str | None
    last4: str | None
    expiry: str | None = Field(description='"MM/YYYY", when the provider said')
    label: str = Field(description='As people read it, e.g. "Visa •••• 4242"')
    created_at: datetime
    renews: list[str] = Field(description="The numbers whose automatic renewal this method pays")

    @classmethod
    def of(cls, view: payment_methods.SavedMethodView) -> SavedMethodOut:
        return cls(**view.__dict__)


class RemovedOut(BaseModel):
    id: int
    label: str
    auto_renew_off: list[str] = Field(description="The numbers whose automatic renewal was turned off")
    detached: bool | None = Field(description="Forgotten by the provider too (null: the provider keeps nothing)")


class ExportIn(BaseModel):
    password: str | None = Field(
        default=None,
        max_length=200,
        description="The account's password: with it the identity document number is in full, without it masked",
    )
    format: Literal["json", "zip"] = Field(default="json", description="zip: the JSON and every receipt as PDF")


class RetentionOut(BaseModel):
    """What closing does and keeps, and for how long (days unless said)."""

    lines: Literal["ended_at_once"] = "ended_at_once"
    number_recycled_after_days: int = Field(description="After the lines end: the usual grace and retention")
    contact_details_erased_after_days: int
    identity_record_erased_after_days: int
    financial_records_kept_years: int = Field(description="Orders, payments, refunds, receipts, the ledger")

    @classmethod
    def of(cls, terms: account_closure.Retention) -> RetentionOut:
        return cls(
            number_recycled_after_days=terms.grace_days + terms.retention_days,
            contact_details_erased_after_days=terms.contact_days,
            identity_record_erased_after_days=terms.identity_days,
            financial_records_kept_years=terms.financial_years,
        )


class ClosureIn(BaseModel):
    password: str = Field(min_length=1, max_length=200)
    confirm: bool = Field(description="True: the caller has read what closing does and keeps (GET /me/closure)")


class ClosedOut(BaseModel):
    closed_at: datetime
    lines_ended: list[str]
    contact_details_erased_at: datetime
    identity_record_erased_at: datetime


def _limit(request: Request, runtime: Runtime, rule: str, account_id: int) -> None:
    if not runtime.rate_limits.hit(rule, f"ip:{client_address(request)}", f"account:{account_id}"):
        raise DomainError(ErrorCode.RATE_LIMITED)


@router.get("/payment-methods", response_model=list[SavedMethodOut])
def list_payment_methods(runtime: RuntimeDep, account: Subscriber, lang: Language) -> list[SavedMethodOut]:
    """The saved payment methods, newest first."""
    return [SavedMethodOut.of(v) for v in payment_methods.methods_of(runtime.unit_of_work, account, lang)]


@router.delete("/payment-methods/{method_id}", response_model=RemovedOut, responses=errors(404))
def remove_payment_method(method_id: PathId, runtime: RuntimeDep, account: Subscriber) -> RemovedOut:
    """Remove a saved method. A line that renewed with it has its automatic renewal turned off
    (listed in `auto_renew_off`, and the subscriber is told); the provider forgets it where it can."""
    removed = payment_methods.remove(runtime, account.id, method_id)
    return RemovedOut(
        id=removed.method_id, label=removed.label, auto_renew_off=removed.auto_renew_off, detached=removed.detached
    )


@router.post(
    "/data-export",
    responses={
        **errors(422, 429),
        200: {"content": {"application/json": {}, "application/zip": {}}, "description": "The export"},
    },
    response_class=Response,
)
def export_my_data(
    body: ExportIn, request: Request, runtime: RuntimeDep, account: Subscriber, lang: Language
) -> Response:
    """Everything Duckline holds about the caller, as a download (JSON, or a ZIP with the receipts'
    PDFs too). Limited to a few an hour."""
    _limit(request, runtime, "export", account.id)
    made = data_export.export(runtime, account.id, body.password, body.format == "zip", lang)
    return download(made, body.format == "zip", runtime.clock.now())


@router.get("/closure", response_model=RetentionOut)
def closure_terms(runtime: RuntimeDep, account: Subscriber) -> RetentionOut:
    """What closing the account does and what is kept, for how long: read it before closing."""
    return RetentionOut.of(account_closure.retention_terms(runtime.unit_of_work))


@router.post("/closure", response_model=ClosedOut, responses=errors(409, 422, 429))
def close_my_account(body: ClosureIn, request: Request, runtime: RuntimeDep, account: Subscriber) -> ClosedOut:
    """Close the account at once (with the password, and `confirm`): the lines end, automatic
    renewal and saved methods go, every session and token is revoked, sign-in is refused from now on."""
    _limit(request, runtime, "login", account.id)
    closed = account_closure.close(runtime, account.id, body.password, body.confirm)
    return ClosedOut(
        closed_at=closed.closed_at,
        lines_ended=closed.lines_ended,
        contact_details_erased_at=closed.erase_contact_at,
        identity_record_erased_at=closed.erase_identity_at,
    )
