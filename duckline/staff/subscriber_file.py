"""What the staff console shows of one subscriber, read in one transaction: the account, the
identity (masked, never the document's bytes), lines, recent orders with their payments, refunds
and receipts, tickets, and the credit-control sessions the network holds now."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from duckline.accounts import closure as account_closure
from duckline.accounts import identity_documents
from duckline.accounts.models import Account, AccountClosure, Person
from duckline.accounts.roles import Role
from duckline.billing import refunds
from duckline.billing.models import Order, Payment, Receipt, Refund
from duckline.catalog.models import Plan
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions
from duckline.db.types import is_id
from duckline.lines.models import Line
from duckline.staff import search as staff_search
from duckline.support import desk as support_desk
from duckline.support.models import Ticket
from duckline.usage import quota
from duckline.usage.models import CreditSession

ORDERS_SHOWN = 50


@dataclass(frozen=True)
class SubscriberFile:
    subscriber: Account
    closure: AccountClosure | None
    person: Person | None
    document: identity_documents.DocumentInfo | None
    lines: list[Line]
    orders: list[Order]  # the latest ORDERS_SHOWN, newest first
    plans: dict[int, Plan]
    payments: dict[int, list[Payment]]  # by order id
    refunds: dict[int, list[Refund]]  # by order id
    receipts: dict[int, list[Receipt]]  # by order id
    tickets: list[Ticket]
    mentions: dict[tuple[str, int], list[int]]
    credit_sessions: list[CreditSession]
    msisdns: dict[int, str]  # by line id
    refundable: frozenset[int]  # order ids


def subscriber_file(transactions: Transactions, viewer: Account, account_id: int) -> SubscriberFile:
    with transactions() as uow:
        s = uow.session
        account = s.get(Account, account_id) if is_id(account_id) else None
        if account is None or account.role is not Role.SUBSCRIBER:
            raise DomainError(ErrorCode.NOT_FOUND)
        person = s.get(Person, account.person_id) if account.person_id else None
        lines = list(s.scalars(select(Line).where(Line.account_id == account.id).order_by(Line.id)).all())
        orders = list(
            s.scalars(
                select(Order).where(Order.account_id == account.id).order_by(Order.id.desc()).limit(ORDERS_SHOWN)
            ).all()
        )
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
        tickets = list(
            s.scalars(select(Ticket).where(Ticket.account_id == account.id).order_by(Ticket.id.desc())).all()
        )
        # What the network holds right now: open credit-control sessions whose grant still holds.
        sessions = list(
            s.scalars(
                select(CreditSession)
                .where(
                    CreditSession.line_id.in_([line.id for line in lines]),
                    CreditSession.status == quota.OPEN,
                    CreditSession.expires_at > uow.now(),
                )
                .order_by(CreditSession.id)
            ).all()
        )
        return SubscriberFile(
            subscriber=account,
            closure=account_closure.closure_of(uow, account.id),
            person=person,
            document=identity_documents.info(uow, person.id) if person else None,  # never its bytes
            lines=lines,
            orders=orders,
            plans=plans,
            payments=payments,
            refunds=order_refunds,
            receipts=receipts,
            tickets=tickets,
            mentions=support_desk.mentioning(uow, order_ids, [p.id for rows in payments.values() for p in rows]),
            credit_sessions=sessions,
            msisdns={line.id: line.msisdn for line in lines},
            refundable=frozenset(o.id for o in orders if o.status in refunds.REFUNDABLE),
        )


def find(transactions: Transactions, viewer: Account, query: str) -> list[staff_search.Match]:
    """Subscribers matching a phone number, a line's number, a name or an identity number."""
    if not query:
        return []
    with transactions() as uow:
        return staff_search.search(uow, query)


@dataclass(frozen=True)
class OrderOwner:
    account_id: int
    currency: str


def order_owner(transactions: Transactions, order_id: int) -> OrderOwner | None:
    """Whose order this is and its currency (the console's refund form), None for no such order."""
    with transactions() as uow:
        order = uow.session.get(Order, order_id) if is_id(order_id) else None
        return OrderOwner(order.account_id, order.currency) if order else None
