"""Saved payment methods as their holder sees them: listed (brand or wallet, last four, expiry —
never more: Duckline never holds a card number) and removed.

Removing the method a line renews with turns that line's automatic renewal off, and says so (the
page, and a message on the channels that always reach the holder): a choice the subscriber made
is never dropped silently, nor moved to another card. A provider that can forget the method at its
end (Stripe detaches it from its customer) is asked to, after the removal is committed.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select

from duckline.accounts.models import Account
from duckline.billing import payment_labels
from duckline.billing.models import SavedPaymentMethod
from duckline.billing.providers import DetachesSavedMethods, ProviderError
from duckline.billing.providers.gateway import Payments
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.db.types import is_id
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.messaging import notifications
from duckline.staff import audit

log = logging.getLogger(__name__)


class App(Protocol):
    """What removing a method needs: transactions, and the providers to forget it at their end."""

    payments: Payments

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]: ...


@dataclass(frozen=True)
class SavedMethodView:
    id: int
    method: str  # card, sandbox, alipay, wechatpay
    brand: str | None
    last4: str | None
    expiry: str | None  # "MM/YYYY", when the provider said
    label: str  # e.g. "Visa •••• 4242", in the reader's language
    created_at: datetime
    renews: list[str]  # the numbers whose automatic renewal it pays


@dataclass(frozen=True)
class Removed:
    method_id: int
    label: str
    auto_renew_off: list[str]  # the numbers whose automatic renewal was turned off
    detached: bool | None  # at the provider: None when the provider keeps no method to forget


@dataclass(frozen=True)
class SavedAtProvider:
    """A removed method the provider may still hold: what it takes to ask the provider to forget it."""

    method_id: int
    provider: str
    token: str


def listed(uow: UnitOfWork, account: Account, language: str) -> list[SavedMethodView]:
    """The account's usable saved methods, newest first."""
    renewing = uow.session.execute(
        select(Line.auto_renew_method_id, Line.msisdn).where(
            Line.account_id == account.id, Line.auto_renew.is_(True), Line.auto_renew_method_id.is_not(None)
        )
    ).all()
    views = []
    for method in lines.saved_methods(uow, account):
        kept = payment_labels.label(method)
        views.append(
            SavedMethodView(
                id=method.id,
                method=method.method.value,
                brand=kept["brand"],
                last4=kept["last4"],
                expiry=method.card_expiry if payment_labels.is_card(method.method) else None,
                label=payment_labels.text(kept, language),
                created_at=method.created_at,
                renews=[msisdn for method_id, msisdn in renewing if method_id == method.id],
            )
        )
    return views


def remove(app: App, account_id: int, method_id: int) -> Removed:
    """Remove one of the account's saved methods (anything else answers NOT_FOUND), then ask the
    provider to forget it."""
    with app.unit_of_work() as uow:
        account = uow.session.get(Account, account_id)
        saved = uow.session.get(SavedPaymentMethod, method_id, with_for_update=True) if is_id(method_id) else None
        if account is None or saved is None or saved.account_id != account.id or saved.revoked_at is not None:
            raise DomainError(ErrorCode.NOT_FOUND)
        label = payment_labels.describe(saved, account.language)
        auto_renew_off = revoke(uow, account, saved, account.id)
        target = SavedAtProvider(saved.id, saved.provider, saved.token)
    return Removed(method_id, label, auto_renew_off, detach(app, target, account_id))


def revoke(uow: UnitOfWork, account: Account, saved: SavedPaymentMethod, actor_id: int | None) -> list[str]:
    """Mark the method removed and turn off the automatic renewal it paid, telling the holder.
    Returns the numbers whose automatic renewal was turned off."""
    saved.revoked_at = uow.now()
    using = uow.session.scalars(
        select(Line).where(Line.auto_renew_method_id == saved.id).order_by(Line.id).with_for_update()
    ).all()
    auto_renew_off = []
    for line in using:
        if line.auto_renew:
            auto_renew_off.append(line.msisdn)
            audit.record(
                uow, actor_id, "line.auto_renew", f"line:{line.id}", old=True, new=False, reason="method_removed"
            )
        line.auto_renew, line.auto_renew_method_id, line.updated_at = False, None, uow.now()
    kept = payment_labels.label(saved)
    audit.record(
        uow,
        actor_id,
        "payment_method.removed",
        f"account:{account.id}",
        payment_method=saved.id,
        method=kept["method"],
        brand=kept["brand"],
        last4=kept["last4"],
        auto_renew_off=auto_renew_off,
    )
    if account.closed_at is None:  # a closing account is told once, about the closure
        label = payment_labels.describe(saved, account.language)
        if auto_renew_off:
            numbers = ", ".join(notifications.msisdn(n) for n in auto_renew_off)
            notifications.notify(
                uow,
                account,
                "payment_method_removed_auto_renew_off",
                f"method-removed:{saved.id}",
                method=label,
                numbers=numbers,
            )
        else:
            notifications.notify(uow, account, "payment_method_removed", f"method-removed:{saved.id}", method=label)
    return auto_renew_off


def detach(app: App, target: SavedAtProvider, actor_id: int | None) -> bool | None:
    """Ask the provider to forget a removed method (after the removal is committed: a provider that
    fails or is slow never undoes it). The outcome is audited; a failure is logged for support."""
    try:
        provider = app.payments.by_name(target.provider)
    except DomainError:
        return None  # the provider is no longer configured: nothing can charge the token anyway
    if not isinstance(provider, DetachesSavedMethods):
        return None
    try:
        provider.detach_saved(target.token)
        detached = True
    except (ProviderError, ValueError) as exc:
        log.warning("saved method %s not detached at %s: %s", target.method_id, target.provider, exc)
        detached = False
    with app.unit_of_work() as uow:
        audit.record(
            uow,
            actor_id,
            "payment_method.detached" if detached else "payment_method.detach_failed",
            f"payment_method:{target.method_id}",
            provider=target.provider,
        )
    return detached


def to_detach(saved: SavedPaymentMethod) -> SavedAtProvider:
    return SavedAtProvider(saved.id, saved.provider, saved.token)


def methods_of(transactions: Transactions, viewer: Account, language: str) -> list[SavedMethodView]:
    """The viewer's saved methods, newest first, labelled in `language`."""
    with transactions() as uow:
        return listed(uow, viewer, language)
