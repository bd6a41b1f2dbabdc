"""The scheduled jobs, by name: what `duckline jobs run` and the in-process scheduler call."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import cast

from duckline.accounts import closure as account_closure
from duckline.accounts.models import Account
from duckline.billing import auto_renew, reconciliation
from duckline.billing.checkout import App
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines import lifecycle
from duckline.messaging import outgoing_webhooks, reminders
from duckline.staff import audit

log = logging.getLogger(__name__)
NAMES = ("reconcile", "auto-renew", "lifecycle", "reminders", "webhooks", "privacy")


def run(app: App, name: str) -> dict[str, object]:
    if name == "reconcile":
        return asdict(reconciliation.run(app))
    if name == "auto-renew":
        return asdict(auto_renew.run(app))
    if name == "lifecycle":
        with app.unit_of_work() as uow:
            return dict(lifecycle.advance(uow))
    if name == "reminders":
        with app.unit_of_work() as uow:
            return dict(reminders.run(uow))
    if name == "webhooks":
        return dict(outgoing_webhooks.run(app.unit_of_work))
    if name == "privacy":  # erase what closed accounts left, once its retention is over
        with app.unit_of_work() as uow:
            return dict(account_closure.erase_due(uow))
    raise DomainError(ErrorCode.NOT_FOUND, field="name")


def run_all(app: App) -> dict[str, dict[str, object]]:
    """Auto-renew before lifecycle, so a line renewed at its expiry never enters grace."""
    results = {}
    for name in NAMES:
        try:
            results[name] = run(app, name)
        except Exception:  # one failing job must not stop the others; it is retried next tick
            log.exception("job %s failed", name)
    return results


RECONCILE_COUNTS = ("applied", "expired", "refunded", "unreachable")


def reconcile_now(app: App, actor: Account) -> dict[str, int]:
    """A staff member runs the reconciliation job now: how many orders each outcome had, audited."""
    report = run(app, "reconcile")
    counts = {name: len(cast(list[int], report.get(name) or [])) for name in RECONCILE_COUNTS}
    with app.unit_of_work() as uow:
        audit.record(uow, actor.id, "job.run", "job:reconcile", **counts)
    return counts
