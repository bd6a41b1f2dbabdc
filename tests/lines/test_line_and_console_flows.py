"""The line, catalogue and staff-console flows through a real unit of work: who may call each one,
what a flow decides that its routes no longer do, and rows that need no session once it has
committed (the routes and pages read them after the flow returns)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from duckline.accounts import service as accounts
from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing import reconciliation
from duckline.billing.pricing import PromotionKind
from duckline.catalog import promotions
from duckline.catalog import service as catalog
from duckline.core import jobs
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines import service as lines
from duckline.lines.states import LineStatus
from duckline.runtime import Runtime
from duckline.staff import dashboard, subscriber_file
from duckline.staff.models import AuditEntry
from duckline.support import cases as tickets
from duckline.support.models import Ticket
from duckline.support.states import TicketKind
from tests.factories import PASSWORD, PNG, hk_mobile, hkid, last_code, numbers, plan_input, staff


def subscriber(runtime: Runtime, n: int) -> Account:
    identity = accounts.IdentityInput("hkid", hkid(n), "CHAN Tai Man", None, date(1990, 1, 1))
    with runtime.unit_of_work() as uow:
        phone = accounts.register(uow, accounts.Registration(hk_mobile(n), PASSWORD, identity, PNG))
    code = last_code(runtime, phone)
    with runtime.unit_of_work() as uow:
        return accounts.verify_phone(uow, phone, code)


def test_a_line_started_by_staff_is_shown_to_its_owner_only(runtime: Runtime) -> None:
    numbers(runtime, 2)
    owner, other = subscriber(runtime, 1), subscriber(runtime, 2)
    admin, _ = staff(runtime, Role.ADMIN)
    plan = catalog.add_plan(runtime.unit_of_work, admin, plan_input(price=9900), "en")
    opened = lines.open_another(runtime.unit_of_work, owner)

    started = lines.start_line(runtime.unit_of_work, admin, opened.line.id, plan.plan.code)
    # Read after the flow committed, as the route reads it.
    assert (started.line.status, started.plan_code) == (LineStatus.ACTIVE, "test-plan")

    shown = lines.dashboard(runtime.unit_of_work, owner, opened.line.id, "zh_Hant")
    assert shown.summary.plan_name == "計劃 test-plan"
    assert shown.summary.left == lines.Countdown(days=30, hours=0)  # the clock stands still
    assert shown.profile.line_id == opened.line.id
    assert shown.person is not None and shown.person.id == owner.person_id

    answer = lines.line_status(runtime.unit_of_work, owner, opened.line.id, "en")
    assert answer.plan is not None and answer.plan.price_display == "HK$99.00"
    assert [a.unit for a in answer.plan.allowances] == [a.unit for a in plan_input().allowances]

    for flow in (
        lambda: lines.dashboard(runtime.unit_of_work, other, opened.line.id, "en"),
        lambda: lines.change_features(runtime.unit_of_work, other, opened.line.id, True, None),
        lambda: lines.esim_of(runtime.unit_of_work, other, opened.line.id),
    ):
        with pytest.raises(DomainError) as refused:
            flow()
        assert refused.value.error is ErrorCode.NOT_FOUND
    home = lines.home(runtime.unit_of_work, owner, "en")
    assert [s.line.id for s in home.summaries] == [opened.line.id]


def test_only_staff_list_another_accounts_lines(runtime: Runtime) -> None:
    numbers(runtime, 2)
    owner, other = subscriber(runtime, 1), subscriber(runtime, 2)
    support, _ = staff(runtime, Role.SUPPORT)
    opened = lines.open_another(runtime.unit_of_work, owner)

    with pytest.raises(DomainError) as refused:
        lines.list_lines(runtime.unit_of_work, other, owner.id, None, 50)
    assert refused.value.error is ErrorCode.FORBIDDEN
    with pytest.raises(DomainError) as missing:
        lines.list_lines(runtime.unit_of_work, support, 0, None, 50)
    assert (missing.value.error, missing.value.field) == (ErrorCode.NOT_FOUND, "account_id")

    listed = lines.list_lines(runtime.unit_of_work, support, owner.id, None, 50)
    assert [v.line.msisdn for v in listed.items] == [opened.line.msisdn]
    assert listed.next_cursor is None


def test_the_console_settles_open_reconciliation_cases_only(runtime: Runtime) -> None:
    numbers(runtime, 1)
    owner = subscriber(runtime, 1)
    admin, _ = staff(runtime, Role.ADMIN)
    support, _ = staff(runtime, Role.SUPPORT, 2)
    with runtime.unit_of_work() as uow:
        case_id = tickets.open_ticket(uow, tickets.RECONCILIATION, "Check", "Check it", owner.id, None).id
        other_id = tickets.open_ticket(uow, TicketKind.SUBSCRIBER, "Help", "Help me", owner.id, None).id

    with pytest.raises(DomainError) as refused:  # a refund needs finance or an admin
        reconciliation.settle(runtime, support, case_id, "refund", "paid twice", console=True)
    assert refused.value.error is ErrorCode.FORBIDDEN
    with pytest.raises(DomainError) as missing:  # not a reconciliation case
        reconciliation.settle(runtime, admin, other_id, "close", "done", console=True)
    assert missing.value.error is ErrorCode.NOT_FOUND

    settled = reconciliation.settle(runtime, admin, case_id, "close", "checked with the provider", console=True)
    assert (settled.ticket.status, settled.order) == ("resolved", None)
    with pytest.raises(DomainError) as again:
        reconciliation.settle(runtime, admin, case_id, "close", "once more", console=True)
    assert again.value.error is ErrorCode.CASE_ALREADY_RESOLVED

    queue = reconciliation.queue(runtime.unit_of_work)
    assert queue.open_cases == [] and [c.ticket.id for c in queue.resolved_cases] == [case_id]
    with runtime.unit_of_work() as uow:
        ticket = uow.session.get(Ticket, case_id)
        assert ticket is not None and ticket.resolution == "close: checked with the provider"


def test_running_reconciliation_from_the_console_is_audited(runtime: Runtime) -> None:
    admin, _ = staff(runtime, Role.ADMIN)
    counts = jobs.reconcile_now(runtime, admin)
    assert counts == {"applied": 0, "expired": 0, "refunded": 0, "unreachable": 0}
    with runtime.unit_of_work() as uow:
        entry = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "job.run")).one()
        assert (entry.actor_id, entry.target, entry.detail) == (admin.id, "job:reconcile", counts)


def test_dashboard_figures_show_the_pool_to_its_managers_only(runtime: Runtime) -> None:
    numbers(runtime, 3)
    owner = subscriber(runtime, 1)
    lines.open_another(runtime.unit_of_work, owner)
    admin, _ = staff(runtime, Role.ADMIN)
    finance, _ = staff(runtime, Role.FINANCE, 2)

    shown = dashboard.figures(runtime.unit_of_work, admin)
    assert len(shown.days) == dashboard.DAYS and shown.days[-1] - shown.days[0] == timedelta(days=dashboard.DAYS - 1)
    assert shown.lines_by_status[LineStatus.PENDING] == 1 and shown.open_cases == 0
    assert shown.pool is not None and shown.revenue == []
    assert dashboard.figures(runtime.unit_of_work, finance).pool is None


def test_the_promotions_board_tells_which_run_now(runtime: Runtime) -> None:
    admin, _ = staff(runtime, Role.ADMIN)
    catalog.add_plan(runtime.unit_of_work, admin, plan_input())
    now = runtime.clock.now()
    texts = {"en": "Spring", "zh_Hant": "春季", "zh_Hans": "春季"}
    form = promotions.PromotionInput(
        name=texts, kind=PromotionKind.PERCENT_OFF, starts_at=now - timedelta(hours=1), ends_at=None, percent_off=10
    )
    running = promotions.add(runtime.unit_of_work, admin, form)
    later = promotions.add(runtime.unit_of_work, admin, replace(form, starts_at=now + timedelta(days=1)))

    board = promotions.board(runtime.unit_of_work)
    assert [p.id for p in board.promotions] == [later.id, running.id]
    assert board.running == {running.id} and board.plan_codes == ["test-plan"]
    assert [p.id for p in promotions.running_without_code(runtime.unit_of_work)] == [running.id]

    promotions.end(runtime.unit_of_work, admin, running.id)
    assert promotions.board(runtime.unit_of_work).running == frozenset()
    with pytest.raises(DomainError) as missing:
        promotions.end(runtime.unit_of_work, admin, 0)
    assert missing.value.error is ErrorCode.NOT_FOUND


def test_the_subscriber_file_is_for_subscribers(runtime: Runtime) -> None:
    numbers(runtime, 1)
    owner = subscriber(runtime, 1)
    opened = lines.open_another(runtime.unit_of_work, owner)
    support, _ = staff(runtime, Role.SUPPORT)

    shown = subscriber_file.subscriber_file(runtime.unit_of_work, support, owner.id)
    assert shown.subscriber.id == owner.id and [line.id for line in shown.lines] == [opened.line.id]
    assert shown.msisdns == {opened.line.id: opened.line.msisdn} and shown.orders == []
    with pytest.raises(DomainError) as missing:  # a staff account has no subscriber page
        subscriber_file.subscriber_file(runtime.unit_of_work, support, support.id)
    assert missing.value.error is ErrorCode.NOT_FOUND
    assert subscriber_file.order_owner(runtime.unit_of_work, 0) is None
