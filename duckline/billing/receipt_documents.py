"""Receipts as documents: the stored receipt, in a language, rendered to PDF."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from duckline.accounts.models import Account, Person
from duckline.accounts.phone import display
from duckline.billing import payment_labels
from duckline.billing.models import Receipt
from duckline.billing.receipt_pdf import CREDIT_NOTE, ITEM_BY_KIND, ReceiptDocument, render_pdf
from duckline.billing.receipts import CREDIT_NOTE as CREDIT_NOTE_KIND
from duckline.billing.receipts import RECEIPT as RECEIPT_KIND
from duckline.core import i18n
from duckline.core.unit_of_work import UnitOfWork

__all__ = ["UnitOfWork", "document", "pdf"]


def document(uow: UnitOfWork, receipt: Receipt, language: str) -> ReceiptDocument:
    account = uow.session.get(Account, receipt.account_id)
    person = uow.session.get(Person, account.person_id) if account and account.person_id else None
    if language not in i18n.LANGUAGES:
        language = account.language if account else i18n.DEFAULT_LANGUAGE
    details = receipt.details
    names = details.get("plan_names") or {}
    plan_name = names.get(language) or names.get("en") or details.get("plan_code", "")
    if receipt.kind == CREDIT_NOTE_KIND:
        items = [(f"{i18n.gettext(language, CREDIT_NOTE)}: {plan_name}", -receipt.amount)]
    else:
        wording = ITEM_BY_KIND.get(str(details.get("kind", "")))
        item = i18n.gettext(language, wording).format(plan=plan_name) if wording else plan_name
        items = [(item, int(details.get("list_amount", receipt.amount)))]
        items += [(str(a["name"]), -int(a["amount"])) for a in details.get("adjustments", [])]
    period = None
    if details.get("period_start") and details.get("period_end"):
        period = (datetime.fromisoformat(details["period_start"]), datetime.fromisoformat(details["period_end"]))
    name = (
        (person.name_zh if language != "en" and person and person.name_zh else None)
        or (person.name_en if person else None)
        or (account.phone if account else "")
    )
    msisdn = details.get("msisdn") or _receipt_msisdn(uow, receipt)
    return ReceiptDocument(
        kind=receipt.kind,
        number=receipt.display_number,
        issued_at=receipt.issued_at,
        language=language,
        operator_name="Duckline",
        customer_name=name or "",
        msisdn=display(msisdn) if msisdn else "",
        items=items,
        total=-receipt.amount if receipt.kind == CREDIT_NOTE_KIND else receipt.amount,
        currency=receipt.currency,
        period=period,
        payment_method=payment_labels.text(details.get("payment") or {}, language),
        reference=details.get("refund_of"),
    )


def _receipt_msisdn(uow: UnitOfWork, receipt: Receipt) -> str | None:
    """A credit note issued before credit notes kept the number: its order's receipt has it."""
    if receipt.kind != CREDIT_NOTE_KIND:
        return None
    original = uow.session.scalars(
        select(Receipt).where(Receipt.order_id == receipt.order_id, Receipt.kind == RECEIPT_KIND)
    ).first()
    return original.details.get("msisdn") if original is not None else None


def pdf(uow: UnitOfWork, receipt: Receipt, language: str) -> bytes:
    return render_pdf(document(uow, receipt, language))
