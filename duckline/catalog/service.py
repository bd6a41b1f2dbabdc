"""The plan catalogue: staff create, edit and retire plans and add-on packs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from duckline.accounts.models import Account
from duckline.accounts.roles import STAFF
from duckline.catalog.models import Plan, PlanAllowance
from duckline.catalog.rules import Allowance, PlanKind, PlanStatus, Unit, Validity, Zone, check_texts
from duckline.catalog.voice_rating import Increments
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.money import Money
from duckline.core.unit_of_work import Transactions, UnitOfWork
from duckline.staff import audit


@dataclass(frozen=True)
class PlanInput:
    code: str
    kind: PlanKind
    names: dict[str, str]
    descriptions: dict[str, str]
    price: Money
    validity: Validity
    allowances: list[Allowance]
    voice_increments: Increments = field(default_factory=Increments)  # how calls are charged


def increments_of(plan: Plan | None) -> Increments:
    """The plan's voice charging increments (per second for a line with no plan)."""
    if plan is None:
        return Increments()
    return Increments(plan.voice_initial_increment, plan.voice_subsequent_increment)


def _check(form: PlanInput) -> None:
    check_texts(form.names, "names")
    check_texts(form.descriptions, "descriptions")
    if form.price.amount < 0:
        raise DomainError(ErrorCode.PLAN_INVALID, field="price", reason="the price cannot be negative")
    if not form.allowances:
        raise DomainError(ErrorCode.PLAN_INVALID, field="allowances", reason="at least one allowance")
    keys = [(a.unit, a.zone) for a in form.allowances]
    if len(keys) != len(set(keys)):
        raise DomainError(ErrorCode.PLAN_INVALID, field="allowances", reason="one allowance per unit and zone")


def create_plan(uow: UnitOfWork, actor: Account, form: PlanInput) -> Plan:
    _check(form)
    now = uow.now()
    plan = Plan(
        code=form.code,
        kind=form.kind,
        status=PlanStatus.ACTIVE,
        names=check_texts(form.names, "names"),
        descriptions=check_texts(form.descriptions, "descriptions"),
        price_amount=form.price.amount,
        currency=form.price.currency,
        validity_days=form.validity.days,
        validity_months=form.validity.months,
        voice_initial_increment=form.voice_increments.initial,
        voice_subsequent_increment=form.voice_increments.subsequent,
        created_at=now,
        updated_at=now,
    )
    try:
        with uow.session.begin_nested():
            uow.session.add(plan)
            uow.session.flush()
    except IntegrityError as exc:
        raise DomainError(ErrorCode.PLAN_CODE_TAKEN, field="code") from exc
    _set_allowances(uow, plan, form.allowances)
    audit.record(uow, actor.id, "plan.created", f"plan:{plan.code}", price=form.price.as_dict())
    return plan


def update_plan(uow: UnitOfWork, actor: Account, code: str, form: PlanInput) -> Plan:
    """Change what the plan offers from now on; lines already on it keep what they were granted."""
    _check(form)
    plan = get_plan(uow, code, for_update=True)
    before = _audited(uow, plan)
    if form.code != code:
        raise DomainError(ErrorCode.PLAN_INVALID, field="code", reason="the code cannot change")
    if form.kind is not plan.kind:
        raise DomainError(ErrorCode.PLAN_INVALID, field="kind", reason="the kind cannot change")
    plan.names = check_texts(form.names, "names")
    plan.descriptions = check_texts(form.descriptions, "descriptions")
    plan.price_amount, plan.currency = form.price.amount, form.price.currency
    plan.validity_days, plan.validity_months = form.validity.days, form.validity.months
    plan.voice_initial_increment = form.voice_increments.initial
    plan.voice_subsequent_increment = form.voice_increments.subsequent
    plan.updated_at = uow.now()
    uow.session.execute(delete(PlanAllowance).where(PlanAllowance.plan_id == plan.id))
    _set_allowances(uow, plan, form.allowances)
    old, new = audit.changes(before, _audited(uow, plan))
    audit.record(uow, actor.id, "plan.updated", f"plan:{plan.code}", old=old, new=new)
    return plan


def _audited(uow: UnitOfWork, plan: Plan) -> dict[str, Any]:
    """What an edit can change, as the audit log keeps it (money with its currency)."""
    allowances = uow.session.scalars(
        select(PlanAllowance).where(PlanAllowance.plan_id == plan.id).order_by(PlanAllowance.id)
    ).all()
    return {
        "names": dict(plan.names),
        "descriptions": dict(plan.descriptions),
        "price": {"amount": plan.price_amount, "currency": plan.currency},
        "validity": {"days": plan.validity_days, "months": plan.validity_months},
        "voice_increments": {"initial": plan.voice_initial_increment, "subsequent": plan.voice_subsequent_increment},
        "allowances": sorted(
            ({"unit": a.unit.value, "zone": a.zone.value, "amount": a.amount} for a in allowances),
            key=lambda a: (a["unit"], a["zone"]),
        ),
    }


def retire_plan(uow: UnitOfWork, actor: Account, code: str) -> Plan:
    """Stop offering a plan. Lines on it keep running until their period ends."""
    plan = get_plan(uow, code, for_update=True)
    before = plan.status
    plan.status = PlanStatus.RETIRED
    plan.updated_at = uow.now()
    audit.record(uow, actor.id, "plan.retired", f"plan:{plan.code}", old=before.value, new=plan.status.value)
    return plan


def _set_allowances(uow: UnitOfWork, plan: Plan, allowances: list[Allowance]) -> None:
    uow.session.add_all(PlanAllowance(plan_id=plan.id, unit=a.unit, zone=a.zone, amount=a.amount) for a in allowances)
    uow.session.flush()


def get_plan(uow: UnitOfWork, code: str, for_update: bool = False) -> Plan:
    plan = uow.session.scalars(
        select(Plan).where(Plan.code == code).with_for_update(of=Plan)
        if for_update
        else select(Plan).where(Plan.code == code)
    ).first()
    if plan is None:
        raise DomainError(ErrorCode.PLAN_NOT_FOUND, field="plan_code")
    return plan


def plan_and_allowances(uow: UnitOfWork, code: str) -> tuple[Plan, list[Allowance]]:
    """get_plan and allowances_of together, in one statement."""
    rows = uow.session.execute(
        select(Plan, PlanAllowance)
        .outerjoin(PlanAllowance, PlanAllowance.plan_id == Plan.id)
        .where(Plan.code == code)
        .order_by(PlanAllowance.id)
    ).all()
    if not rows:
        raise DomainError(ErrorCode.PLAN_NOT_FOUND, field="plan_code")
    allowances = [Allowance(Unit(a.unit), Zone(a.zone), a.amount) for _, a in rows if a is not None]
    return rows[0][0], allowances


def list_plans(uow: UnitOfWork, include_retired: bool = False) -> list[Plan]:
    query = select(Plan).order_by(Plan.kind, Plan.price_amount, Plan.code)
    if not include_retired:
        query = query.where(Plan.status == PlanStatus.ACTIVE)
    return list(uow.session.scalars(query).all())


def allowances_of(uow: UnitOfWork, plan_ids: list[int]) -> dict[int, list[Allowance]]:
    rows = uow.session.scalars(
        select(PlanAllowance).where(PlanAllowance.plan_id.in_(plan_ids)).order_by(PlanAllowance.id)
    ).all()
    result: dict[int, list[Allowance]] = {plan_id: [] for plan_id in plan_ids}
    for row in rows:
        result[row.plan_id].append(Allowance(Unit(row.unit), Zone(row.zone), row.amount))
    return result


# --- Flows: each owns its transaction and returns what the API and the console show ---------------


@dataclass(frozen=True)
class PlanView:
    """A plan as offered: its row (read in the flow's transaction), allowances and price in words."""

    plan: Plan
    allowances: list[Allowance]
    price_display: str


def plan_views(uow: UnitOfWork, plans: list[Plan], language: str) -> list[PlanView]:
    allowances = allowances_of(uow, [p.id for p in plans])
    locale = i18n.babel_locale(language)
    return [PlanView(p, allowances[p.id], Money(p.price_amount, p.currency).format(locale)) for p in plans]


def offer(transactions: Transactions, viewer: Account | None, include_retired: bool, language: str) -> list[PlanView]:
    """Plans and add-on packs on offer; retired ones too only if staff ask for them."""
    show_retired = include_retired and viewer is not None and viewer.role in STAFF
    with transactions() as uow:
        return plan_views(uow, list_plans(uow, include_retired=show_retired), language)


def show_plan(transactions: Transactions, code: str, language: str = "en") -> PlanView:
    with transactions() as uow:
        return plan_views(uow, [get_plan(uow, code)], language)[0]


def add_plan(transactions: Transactions, actor: Account, form: PlanInput, language: str = "en") -> PlanView:
    with transactions() as uow:
        return plan_views(uow, [create_plan(uow, actor, form)], language)[0]


def edit_plan(transactions: Transactions, actor: Account, code: str, form: PlanInput, language: str = "en") -> PlanView:
    with transactions() as uow:
        return plan_views(uow, [update_plan(uow, actor, code, form)], language)[0]


def end_plan(transactions: Transactions, actor: Account, code: str, language: str = "en") -> PlanView:
    with transactions() as uow:
        return plan_views(uow, [retire_plan(uow, actor, code)], language)[0]
