"""The plan catalogue: anyone may read the offer; admins create, edit and retire plans."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from duckline import i18n
from duckline.adapters.db.tables import Account, Plan
from duckline.domain.catalog import Allowance, Validity
from duckline.domain.roles import CATALOGUE_EDITORS, STAFF
from duckline.money import Money
from duckline.services import catalog
from duckline.services.unit_of_work import UnitOfWork
from duckline.web.deps import PUBLIC, RuntimeDep, language, optional_account, require_roles
from duckline.web.openapi import errors
from duckline.web.schemas import AllowanceIn, PlanIn, PlanOut, plan_out

router = APIRouter(prefix="/plans", tags=["catalogue"])
Editor = Annotated[Account, Depends(require_roles(CATALOGUE_EDITORS))]
Language = Annotated[str, Depends(language)]
PlanCode = Annotated[str, Path(max_length=40)]


def render(uow: UnitOfWork, plans: list[Plan], lang: str) -> list[PlanOut]:
    allowances = catalog.allowances_of(uow, [p.id for p in plans])
    return [
        plan_out(
            p,
            [AllowanceIn(unit=a.unit, zone=a.zone, amount=a.amount) for a in allowances[p.id]],
            Money(p.price_amount, p.currency).format(i18n.babel_locale(lang)),
        )
        for p in plans
    ]


def to_input(body: PlanIn) -> catalog.PlanInput:
    return catalog.PlanInput(
        code=body.code,
        kind=body.kind,
        names=body.names,
        descriptions=body.descriptions,
        price=Money(body.price.amount, body.price.currency),
        validity=Validity(days=body.validity_days, months=body.validity_months),
        allowances=[Allowance(a.unit, a.zone, a.amount) for a in body.allowances],
    )


@router.get("", response_model=list[PlanOut], dependencies=[PUBLIC])
def list_plans(
    runtime: RuntimeDep,
    lang: Language,
    viewer: Annotated[Account | None, Depends(optional_account)],
    include_retired: bool = False,
) -> list[PlanOut]:
    """Plans and add-on packs on offer (staff may ask for retired ones too)."""
    with runtime.unit_of_work() as uow:
        show_retired = include_retired and viewer is not None and viewer.role in STAFF
        return render(uow, catalog.list_plans(uow, include_retired=show_retired), lang)


@router.get("/{code}", response_model=PlanOut, dependencies=[PUBLIC])
def get_plan(code: PlanCode, runtime: RuntimeDep, lang: Language) -> PlanOut:
    with runtime.unit_of_work() as uow:
        return render(uow, [catalog.get_plan(uow, code)], lang)[0]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PlanOut, responses=errors(409))
def create_plan(body: PlanIn, runtime: RuntimeDep, actor: Editor, lang: Language) -> PlanOut:
    with runtime.unit_of_work() as uow:
        return render(uow, [catalog.create_plan(uow, actor, to_input(body))], lang)[0]


@router.put("/{code}", response_model=PlanOut, responses=errors(409))
def update_plan(code: PlanCode, body: PlanIn, runtime: RuntimeDep, actor: Editor, lang: Language) -> PlanOut:
    """Change the offer from now on; lines already on the plan keep what they were granted."""
    with runtime.unit_of_work() as uow:
        return render(uow, [catalog.update_plan(uow, actor, code, to_input(body))], lang)[0]


@router.post("/{code}/retire", response_model=PlanOut, responses=errors(409))
def retire_plan(code: PlanCode, runtime: RuntimeDep, actor: Editor, lang: Language) -> PlanOut:
    with runtime.unit_of_work() as uow:
        return render(uow, [catalog.retire_plan(uow, actor, code)], lang)[0]
