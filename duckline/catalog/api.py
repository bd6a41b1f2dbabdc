"""The plan catalogue: anyone may read the offer; admins create, edit and retire plans. The rating
groups online charging rates by: staff read them, admins change them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from duckline.accounts.models import Account
from duckline.accounts.roles import CATALOGUE_EDITORS, STAFF
from duckline.catalog import rating
from duckline.catalog import service as catalog
from duckline.catalog.rules import Allowance, Validity
from duckline.catalog.schemas import PlanIn, PlanOut, RatingGroupIn, RatingGroupOut, plan_out_of
from duckline.catalog.voice_rating import Increments
from duckline.core.money import Money
from duckline.web.deps import PUBLIC, RuntimeDep, language, optional_account, require_roles
from duckline.web.openapi import errors

router = APIRouter(prefix="/plans", tags=["catalogue"])
Editor = Annotated[Account, Depends(require_roles(CATALOGUE_EDITORS))]
Language = Annotated[str, Depends(language)]
PlanCode = Annotated[str, Path(max_length=40)]


def to_input(body: PlanIn) -> catalog.PlanInput:
    return catalog.PlanInput(
        code=body.code,
        kind=body.kind,
        names=body.names,
        descriptions=body.descriptions,
        price=Money(body.price.amount, body.price.currency),
        validity=Validity(days=body.validity_days, months=body.validity_months),
        allowances=[Allowance(a.unit, a.zone, a.amount) for a in body.allowances],
        voice_increments=Increments(body.voice_initial_increment, body.voice_subsequent_increment),
    )


@router.get("", response_model=list[PlanOut], dependencies=[PUBLIC])
def list_plans(
    runtime: RuntimeDep,
    lang: Language,
    viewer: Annotated[Account | None, Depends(optional_account)],
    include_retired: bool = False,
) -> list[PlanOut]:
    """Plans and add-on packs on offer (staff may ask for retired ones too)."""
    return [plan_out_of(v) for v in catalog.offer(runtime.unit_of_work, viewer, include_retired, lang)]


@router.get("/{code}", response_model=PlanOut, dependencies=[PUBLIC])
def get_plan(code: PlanCode, runtime: RuntimeDep, lang: Language) -> PlanOut:
    return plan_out_of(catalog.show_plan(runtime.unit_of_work, code, lang))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PlanOut, responses=errors(409))
def create_plan(body: PlanIn, runtime: RuntimeDep, actor: Editor, lang: Language) -> PlanOut:
    return plan_out_of(catalog.add_plan(runtime.unit_of_work, actor, to_input(body), lang))


@router.put("/{code}", response_model=PlanOut, responses=errors(409))
def update_plan(code: PlanCode, body: PlanIn, runtime: RuntimeDep, actor: Editor, lang: Language) -> PlanOut:
    """Change the offer from now on; lines already on the plan keep what they were granted."""
    return plan_out_of(catalog.edit_plan(runtime.unit_of_work, actor, code, to_input(body), lang))


@router.post("/{code}/retire", response_model=PlanOut, responses=errors(409))
def retire_plan(code: PlanCode, runtime: RuntimeDep, actor: Editor, lang: Language) -> PlanOut:
    return plan_out_of(catalog.end_plan(runtime.unit_of_work, actor, code, lang))


# Rating groups: which allowance a Diameter Rating-Group (or one Service-Identifier of it) draws on.
rating_router = APIRouter(prefix="/rating-groups", tags=["catalogue"])
Staff = Annotated[Account, Depends(require_roles(STAFF))]
Unsigned32 = Annotated[int, Path(ge=0, le=rating.UNSIGNED32)]
ServiceIdentifier = Annotated[
    int | None, Query(ge=0, le=rating.UNSIGNED32, description="one Service-Identifier of the group only")
]


def rating_group_out(mapping: rating.Mapping) -> RatingGroupOut:
    return RatingGroupOut(
        rating_group=mapping.rating_group, service_identifier=mapping.service_identifier, unit=mapping.unit
    )


@rating_router.get("", response_model=list[RatingGroupOut])
def list_rating_groups(runtime: RuntimeDep, viewer: Staff) -> list[RatingGroupOut]:
    """Every rating group online charging knows, and the unit it is charged in."""
    return [rating_group_out(m) for m in rating.mappings(runtime.unit_of_work)]


@rating_router.put("/{rating_group}", response_model=RatingGroupOut)
def set_rating_group(
    rating_group: Unsigned32,
    body: RatingGroupIn,
    runtime: RuntimeDep,
    actor: Editor,
    service_identifier: ServiceIdentifier = None,
) -> RatingGroupOut:
    """Charge the rating group (or one service of it) in this unit from the next request on."""
    return rating_group_out(
        rating.set_mapping(runtime.unit_of_work, actor, rating_group, service_identifier, body.unit)
    )


@rating_router.delete("/{rating_group}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
def remove_rating_group(
    rating_group: Unsigned32, runtime: RuntimeDep, actor: Editor, service_identifier: ServiceIdentifier = None
) -> None:
    """Stop rating it: its services are answered 5031 RATING_FAILED from the next request on."""
    rating.remove_mapping(runtime.unit_of_work, actor, rating_group, service_identifier)
