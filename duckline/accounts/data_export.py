"""A subscriber's copy of everything Duckline holds about them: a data access request under Hong
Kong's Personal Data (Privacy) Ordinance (Cap. 486), as JSON (or a ZIP of the JSON and the receipts'
PDFs), built in one transaction and streamed.

The identity document number is masked, as every page shows it; in full only after a fresh proof
of the account holder (the password), because an export is a file that travels (downloads folder,
e-mail attachment) and a full identity number is what identity theft needs. No card number is in
it: Duckline never holds one. Staff-only notes on support tickets are not the subscriber's
conversation and are left out; staff are named as "duckline", not by who they are.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select

from duckline.accounts import contacts
from duckline.accounts import service as accounts
from duckline.accounts.closure import Retention, prove
from duckline.accounts.models import Account, DocumentImage, Guardian, Person
from duckline.billing import receipt_documents
from duckline.billing.models import Order, Payment, Receipt, Refund, SavedPaymentMethod
from duckline.catalog.models import Plan
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines.models import EsimProfile, Line, LineEvent
from duckline.messaging import notifications
from duckline.messaging.models import Notification
from duckline.sip.models import SipAccount
from duckline.staff import audit
from duckline.staff.models import AuditEntry
from duckline.support.models import Ticket, TicketMessage
from duckline.usage.models import UsageRecord

EXPORT_FORMAT = "duckline-data-export/1"
_PRIVATE_DETAIL_KEYS = frozenset({"body", "note", "text", "internal"})  # staff-only words, if an entry holds any

# --- the data access request ------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    data: dict[str, Any]
    receipt_pdfs: dict[str, bytes]  # file name -> PDF, for the ZIP

    def json_chunks(self) -> Iterator[str]:
        """The JSON document in pieces, to stream it."""
        yield from json.JSONEncoder(ensure_ascii=False, indent=2, default=_plain).iterencode(self.data)

    def zip_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("duckline-data.json", "".join(self.json_chunks()))
            for name, content in self.receipt_pdfs.items():
                archive.writestr(f"receipts/{name}", content)
        return buffer.getvalue()


def export(
    app: accounts.SignInApp, account_id: int, password: str | None, with_receipts: bool, language: str
) -> Export:
    """Everything held about the account, as data. With the password, the identity document
    number in full; without, masked. Audited (never with the number)."""
    full_identity = password is not None
    if full_identity:
        prove(app, account_id, password or "")
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        if account is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        data = _collect(uow, account, full_identity)
        pdfs = {}
        if with_receipts:
            for receipt in uow.session.scalars(
                select(Receipt).where(Receipt.account_id == account.id).order_by(Receipt.id)
            ):
                pdfs[f"{receipt.display_number}.pdf"] = receipt_documents.pdf(uow, receipt, language)
        audit.record(
            uow,
            account.id,
            "account.data_exported",
            f"account:{account.id}",
            identity="full" if full_identity else "masked",
            format="zip" if with_receipts else "json",
        )
    return Export(data, pdfs)


def _collect(uow: UnitOfWork, account: Account, full_identity: bool) -> dict[str, Any]:
    s = uow.session
    own_lines = list(s.scalars(select(Line).where(Line.account_id == account.id).order_by(Line.id)))
    line_ids = [line.id for line in own_lines]
    own_orders = list(s.scalars(select(Order).where(Order.account_id == account.id).order_by(Order.id)))
    order_ids = [order.id for order in own_orders]
    tickets = list(
        s.scalars(
            select(Ticket).where(Ticket.account_id == account.id, Ticket.kind == "subscriber").order_by(Ticket.id)
        )
    )
    methods = list(
        s.scalars(
            select(SavedPaymentMethod)
            .where(SavedPaymentMethod.account_id == account.id)
            .order_by(SavedPaymentMethod.id)
        )
    )
    person = s.get(Person, account.person_id) if account.person_id else None
    targets = [f"account:{account.id}"]
    targets += [f"line:{i}" for i in line_ids] + [f"order:{i}" for i in order_ids]
    targets += [f"ticket:{t.id}" for t in tickets] + [f"payment_method:{m.id}" for m in methods]
    if person is not None:
        targets.append(f"person:{person.id}")
    return {
        "format": EXPORT_FORMAT,
        "generated_at": uow.now(),
        "about": "Everything Duckline holds about this account: a data access request under Hong Kong's "
        "Personal Data (Privacy) Ordinance (Cap. 486). Card numbers are never held by Duckline, only the "
        "payment provider's references, the card brand and its last four digits.",
        "account": {
            "id": account.id,
            "phone": account.phone,
            "phone_verified_at": account.phone_verified_at,
            "email": account.email,
            "language": account.language,
            "timezone": account.timezone,
            "created_at": account.created_at,
            "closed_at": account.closed_at,
        },
        "identity": _identity(uow, person, full_identity),
        "lines": [_line(uow, line) for line in own_lines],
        "usage_summary": _usage(uow, line_ids),
        "orders": [_order(uow, order) for order in own_orders],
        "payments": [_payment(p) for p in _in(uow, Payment, Payment.order_id, order_ids)],
        "refunds": [_refund(r) for r in _in(uow, Refund, Refund.order_id, order_ids)],
        "receipts": [
            {
                "number": r.display_number,
                "kind": r.kind,
                "order_id": r.order_id,
                "amount": r.amount,
                "currency": r.currency,
                "issued_at": r.issued_at,
                "details": r.details,
            }
            for r in s.scalars(select(Receipt).where(Receipt.account_id == account.id).order_by(Receipt.id))
        ],
        "saved_payment_methods": [
            {
                "id": m.id,
                "provider": m.provider,
                "method": m.method.value,
                "card_brand": m.card_brand,
                "card_last4": m.card_last4,
                "card_expiry": m.card_expiry,
                "created_at": m.created_at,
                "removed_at": m.revoked_at,
            }
            for m in methods
        ],
        "tickets": [_ticket(uow, t) for t in tickets],
        "notifications": [
            {
                "channel": n.channel,
                "recipient": n.recipient,
                "kind": n.template,
                "language": n.language,
                "subject": n.subject,
                # A message with a code still usable keeps it: shown struck out, as once it is sent.
                "text": notifications.MASK if n.one_time_code else n.body,
                "status": n.status,
                "created_at": n.created_at,
                "sent_at": n.sent_at,
            }
            for n in s.scalars(
                select(Notification).where(Notification.account_id == account.id).order_by(Notification.id)
            )
        ],
        "consents": {
            "messages": contacts.effective_preferences(account),
            "always_on": sorted(notifications.ALWAYS_ON),
        },
        "audit": [
            _audit(entry, account)
            for entry in s.scalars(
                select(AuditEntry)
                .where(or_(AuditEntry.actor_id == account.id, AuditEntry.target.in_(targets)))
                .order_by(AuditEntry.id)
            )
        ],
        "retention": asdict(Retention.of(uow)),
    }


def _in(uow: UnitOfWork, table: Any, column: Any, ids: list[int]) -> list[Any]:
    return list(uow.session.scalars(select(table).where(column.in_(ids)).order_by(table.id))) if ids else []


def _identity(uow: UnitOfWork, person: Person | None, full: bool) -> dict[str, Any] | None:
    if person is None:
        return None
    number = uow.protector.decrypt(person.document_cipher).decode() if full else person.document_masked
    guardian = uow.session.get(Guardian, person.guardian_id) if person.guardian_id else None
    images = uow.session.scalars(
        select(DocumentImage).where(DocumentImage.person_id == person.id).order_by(DocumentImage.id)
    )
    return {
        "document_type": person.document_type.value,
        "document_number": number,
        "document_number_shown": "full" if full else "masked",
        "name_en": person.name_en,
        "name_zh": person.name_zh,
        "birth_date": person.birth_date,
        "verification": person.kyc_status.value,
        "verification_reason": person.kyc_reason,
        "created_at": person.created_at,
        # The adult who registered too (under-16s): theirs is another person's data, shown masked.
        "guardian": {
            "document_type": guardian.document_type.value,
            "document_number": guardian.document_masked,
            "name_en": guardian.name_en,
            "name_zh": guardian.name_zh,
        }
        if guardian is not None
        else None,
        "document_images": [
            {"content_type": i.content_type, "size": i.size, "sha256": i.sha256, "created_at": i.created_at}
            for i in images
        ],
    }


def _line(uow: UnitOfWork, line: Line) -> dict[str, Any]:
    plan = uow.session.get(Plan, line.plan_id) if line.plan_id else None
    profile = uow.session.scalars(select(EsimProfile).where(EsimProfile.line_id == line.id)).first()
    sip = uow.session.scalars(select(SipAccount).where(SipAccount.line_id == line.id)).first()
    events = uow.session.scalars(select(LineEvent).where(LineEvent.line_id == line.id).order_by(LineEvent.id))
    return {
        "id": line.id,
        "msisdn": line.msisdn,
        "status": line.status.value,
        "plan": plan.code if plan else None,
        "period_start": line.period_start,
        "expires_at": line.expires_at,
        "voicemail": line.voicemail,
        "caller_id": line.caller_id,
        "auto_renew": line.auto_renew,
        "created_at": line.created_at,
        # The activation code installs the eSIM: a credential, shown on the line's page, not copied here.
        "esim": {"iccid": profile.iccid, "smdp_address": profile.smdp_address} if profile else None,
        # The SIP account's digest hashes are credentials too (they sign a phone in): left out.
        "sip_account": (
            {
                "username": sip.username,
                "domain": sip.domain,
                "created_at": sip.created_at,
                "password_changed_at": sip.password_changed_at,
            }
            if sip
            else None
        ),
        "events": [
            {
                "from": e.from_status.value if e.from_status else None,
                "to": e.to_status.value,
                "reason": e.reason,
                "at": e.at,
            }
            for e in events
        ],
    }


def _usage(uow: UnitOfWork, line_ids: list[int]) -> list[dict[str, Any]]:
    if not line_ids:
        return []
    rows = uow.session.execute(
        select(
            UsageRecord.line_id,
            UsageRecord.unit,
            UsageRecord.zone,
            func.count(),
            func.sum(UsageRecord.quantity),
            func.min(UsageRecord.started_at),
            func.max(UsageRecord.started_at),
        )
        .where(UsageRecord.line_id.in_(line_ids))
        .group_by(UsageRecord.line_id, UsageRecord.unit, UsageRecord.zone)
        .order_by(UsageRecord.line_id, UsageRecord.unit, UsageRecord.zone)
    ).all()
    return [
        {
            "line_id": line_id,
            "unit": unit.value,
            "zone": zone.value,
            "records": int(count),
            "quantity": int(total or 0),
            "first": first,
            "last": last,
        }
        for line_id, unit, zone, count, total, first, last in rows
    ]


def _order(uow: UnitOfWork, order: Order) -> dict[str, Any]:
    plan = uow.session.get(Plan, order.plan_id)
    return {
        "id": order.id,
        "line_id": order.line_id,
        "plan": plan.code if plan else None,
        "kind": order.kind.value,
        "status": order.status.value,
        "currency": order.currency,
        "list_amount": order.list_amount,
        "discount_amount": order.discount_amount,
        "total_amount": order.total_amount,
        "refunded_amount": order.refunded_amount,
        "payment_method": order.payment_method.value,
        "auto_renew": order.auto_renew,
        "period_start": order.period_start,
        "period_end": order.period_end,
        "created_at": order.created_at,
        "fulfilled_at": order.fulfilled_at,
    }


def _payment(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "order_id": payment.order_id,
        "provider": payment.provider,
        "method": payment.method.value,
        "provider_reference": payment.provider_ref,
        "status": payment.status.value,
        "amount": payment.amount,
        "currency": payment.currency,
        "captured_amount": payment.captured_amount,
        "refunded_amount": payment.refunded_amount,
        "card_brand": payment.card_brand,
        "card_last4": payment.card_last4,
        "wallet_account": payment.wallet_account,
        "failure_code": payment.failure_code,
        "created_at": payment.created_at,
        "captured_at": payment.captured_at,
    }


def _refund(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "order_id": refund.order_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "reason": refund.reason,
        "status": refund.status,
        "created_at": refund.created_at,
    }


def _ticket(uow: UnitOfWork, ticket: Ticket) -> dict[str, Any]:
    messages = uow.session.scalars(
        select(TicketMessage).where(TicketMessage.ticket_id == ticket.id).order_by(TicketMessage.id)
    )
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "body": ticket.body,
        "status": ticket.status,
        "created_at": ticket.created_at,
        "resolved_at": ticket.resolved_at,
        "resolution": ticket.resolution,
        # Staff notes kept for staff alone are not the conversation the subscriber had with support.
        "messages": [
            {"from": "support" if m.staff else "you", "body": m.body, "created_at": m.created_at}
            for m in messages
            if not getattr(m, "internal", False)
        ],
    }


def _audit(entry: AuditEntry, account: Account) -> dict[str, Any]:
    by = "you" if entry.actor_id == account.id else ("system" if entry.actor_id is None else "duckline")
    return {
        "action": entry.action,
        "subject": entry.target,
        "by": by,
        "details": {k: v for k, v in (entry.detail or {}).items() if k not in _PRIVATE_DETAIL_KEYS},
        "at": entry.at,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")
