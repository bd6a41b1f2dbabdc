"""Console: the plan catalogue (create, edit, retire), promotions (create, deactivate) and the rating
groups online charging rates by (set, remove). Admins change them; every staff member may read them."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.billing.pricing import PromotionKind
from duckline.catalog import promotions, rating
from duckline.catalog import service as catalog
from duckline.catalog.models import Plan
from duckline.catalog.rules import TEXT_LANGUAGES, Allowance, PlanKind, Unit, Validity, Zone
from duckline.catalog.voice_rating import MAX_INCREMENT, Increments
from duckline.core.errors import DomainError
from duckline.core.money import Money
from duckline.runtime import Runtime
from duckline.staff.console_common import (
    Admin,
    CatalogueEditor,
    FormProblem,
    Posted,
    Staff,
    local_input,
    money_input,
    optional_count,
    page,
    parse_count,
    parse_local_time,
    parse_money,
    status_for,
    text,
    texts,
)
from duckline.web.deps import RuntimeDep
from duckline.web.portal.rendering import check_csrf, redirect

router = APIRouter(include_in_schema=False)
Token = Annotated[str, Form()]
ROWS = 6  # allowance rows on the plan form (empty ones are ignored)
BONUS_ROWS = 2
MAX_DAYS, MAX_MONTHS = 3660, 120  # as the API allows
PLAN_CODE = re.compile(r"[a-z0-9][a-z0-9\-]{1,39}")
PROMO_CODE = re.compile(r"[A-Za-z0-9\-]{3,40}")
# How an allowance is entered: the unit stored, and how many of it one entered unit is.
MEASURES: dict[str, tuple[Unit, int]] = {
    "voice_minutes": (Unit.VOICE_SECONDS, 60),
    "voice_seconds": (Unit.VOICE_SECONDS, 1),
    "sms": (Unit.SMS, 1),
    "data_gb": (Unit.DATA_BYTES, 1024**3),
    "data_mb": (Unit.DATA_BYTES, 1024**2),
    "data_bytes": (Unit.DATA_BYTES, 1),
}


def measure_of(allowance: Allowance) -> tuple[str, int]:
    """The largest measure that shows an allowance exactly (5 GB, not 5368709120 bytes)."""
    for name, (unit, factor) in MEASURES.items():
        if unit is allowance.unit and allowance.amount % factor == 0:
            return name, allowance.amount // factor
    raise AssertionError(allowance)  # every unit has a measure of 1


def read_allowances(measures: list[str], zones: list[str], amounts: list[str], field: str) -> list[Allowance]:
    found = []
    for measure, zone, amount in zip(measures, zones, amounts, strict=False):
        if not amount.strip():
            continue
        if measure not in MEASURES or zone not in {z.value for z in Zone}:
            raise FormProblem("allowance", field)
        unit, factor = MEASURES[measure]
        found.append(Allowance(unit, Zone(zone), parse_count(amount, field, minimum=1, maximum=10**15) * factor))
    return found


# --- plans ----------------------------------------------------------------------------------------


@router.get("/console/plans")
def plans(request: Request, runtime: RuntimeDep, actor: Staff) -> Response:
    views = catalog.offer(runtime.unit_of_work, actor, include_retired=True, language="en")
    rows = [v.plan for v in views]
    return page(
        request,
        runtime,
        actor,
        "plans.html",
        plans=sorted(rows, key=lambda p: (p.status.value, p.kind.value, p.price_amount, p.code)),
        allowances={v.plan.id: [(*measure_of(a), a.zone.value) for a in v.allowances] for v in views},
    )


def _blank_form() -> dict[str, Any]:
    return {
        "code": "",
        "kind": PlanKind.PLAN.value,
        "names": dict.fromkeys(TEXT_LANGUAGES, ""),
        "descriptions": dict.fromkeys(TEXT_LANGUAGES, ""),
        "price": "",
        "validity_count": "30",
        "validity_unit": "days",
        "voice_initial_increment": "1",
        "voice_subsequent_increment": "1",
        "allowances": [{"measure": "voice_minutes", "zone": "HK", "amount": ""} for _ in range(ROWS)],
    }


def _plan_form(plan: Plan, allowances: list[Allowance]) -> dict[str, Any]:
    rows = []
    for allowance in allowances:
        measure, amount = measure_of(allowance)
        rows.append({"measure": measure, "zone": allowance.zone.value, "amount": str(amount)})
    rows += [{"measure": "voice_minutes", "zone": "HK", "amount": ""} for _ in range(max(ROWS - len(rows), 2))]
    return {
        "code": plan.code,
        "kind": plan.kind.value,
        "names": {lang: plan.names.get(lang, "") for lang in TEXT_LANGUAGES},
        "descriptions": {lang: plan.descriptions.get(lang, "") for lang in TEXT_LANGUAGES},
        "price": money_input(plan.price_amount, plan.currency),
        "validity_count": str(plan.validity_months or plan.validity_days),
        "validity_unit": "months" if plan.validity_months else "days",
        "voice_initial_increment": str(plan.voice_initial_increment),
        "voice_subsequent_increment": str(plan.voice_subsequent_increment),
        "allowances": rows,
    }


def _plan_page(
    request: Request,
    runtime: Runtime,
    actor: Account,
    form: dict[str, Any],
    editing: str | None,
    failure: DomainError | FormProblem | None = None,
) -> Response:
    return page(
        request,
        runtime,
        actor,
        "plan_form.html",
        status_for(failure) if failure else 200,
        failure=failure,
        form=form,
        editing=editing,
        measures=list(MEASURES),
        zones=[z.value for z in Zone],
    )


@router.get("/console/plans/new")
def new_plan(request: Request, runtime: RuntimeDep, actor: CatalogueEditor) -> Response:
    return _plan_page(request, runtime, actor, _blank_form(), None)


@router.get("/console/plans/{code}/edit")
def edit_plan(code: str, request: Request, runtime: RuntimeDep, actor: CatalogueEditor) -> Response:
    try:
        view = catalog.show_plan(runtime.unit_of_work, code)
        form = _plan_form(view.plan, view.allowances)
    except DomainError as error:
        return page(request, runtime, actor, "not_found.html", status_for(error))
    return _plan_page(request, runtime, actor, form, code)


def _submitted(form: Posted, code: str) -> dict[str, Any]:
    """The plan form as the staff member filled it in, to show again if something is wrong."""
    rows = [
        {"measure": m, "zone": z, "amount": a}
        for m, z, a in zip(
            texts(form, "allowance_measure", 20),
            texts(form, "allowance_zone", 4),
            texts(form, "allowance_amount", 30),
            strict=False,
        )
    ][:20]
    rows += [{"measure": "voice_minutes", "zone": "HK", "amount": ""} for _ in range(max(0, 2 - len(rows)))]
    return {
        "code": code,
        "kind": text(form, "kind", 20),
        "names": {lang: text(form, f"name_{lang}", 200) for lang in TEXT_LANGUAGES},
        "descriptions": {lang: text(form, f"description_{lang}", 1000) for lang in TEXT_LANGUAGES},
        "price": text(form, "price", 30),
        "validity_count": text(form, "validity_count", 10),
        "validity_unit": text(form, "validity_unit", 10),
        "voice_initial_increment": text(form, "voice_initial_increment", 10),
        "voice_subsequent_increment": text(form, "voice_subsequent_increment", 10),
        "allowances": rows,
    }


def _plan_input(form: dict[str, Any]) -> catalog.PlanInput:
    code = str(form["code"]).strip()
    if not PLAN_CODE.fullmatch(code):
        raise FormProblem("plan_code", "code")
    if form["kind"] not in {k.value for k in PlanKind}:
        raise FormProblem("required", "kind")
    for group in ("names", "descriptions"):
        for lang in TEXT_LANGUAGES:
            if not form[group][lang].strip():
                raise FormProblem("required", f"{group[:-1]}_{lang}")
    count = parse_count(form["validity_count"], "validity_count", minimum=1, maximum=MAX_DAYS)
    if form["validity_unit"] == "months" and count > MAX_MONTHS:
        raise FormProblem("number", "validity_count")
    allowances = read_allowances(
        [r["measure"] for r in form["allowances"]],
        [r["zone"] for r in form["allowances"]],
        [r["amount"] for r in form["allowances"]],
        "allowances",
    )
    if not allowances:
        raise FormProblem("allowance", "allowances")
    increments = Increments(
        *(
            parse_count(form[name], name, minimum=1, maximum=MAX_INCREMENT)
            for name in ("voice_initial_increment", "voice_subsequent_increment")
        )
    )
    return catalog.PlanInput(
        code=code,
        kind=PlanKind(form["kind"]),
        names={lang: form["names"][lang].strip()[:200] for lang in TEXT_LANGUAGES},
        descriptions={lang: form["descriptions"][lang].strip()[:1000] for lang in TEXT_LANGUAGES},
        price=Money(parse_money(form["price"], "HKD", "price"), "HKD"),
        validity=Validity(days=count) if form["validity_unit"] != "months" else Validity(months=count),
        allowances=allowances,
        voice_increments=increments,
    )


def _save_plan(
    request: Request, runtime: Runtime, actor: Account, form: dict[str, Any], editing: str | None
) -> Response:
    try:
        plan_input = _plan_input(form)
        if editing is None:
            plan = catalog.add_plan(runtime.unit_of_work, actor, plan_input).plan
        else:
            plan = catalog.edit_plan(runtime.unit_of_work, actor, editing, plan_input).plan
    except (DomainError, FormProblem) as failure:
        return _plan_page(request, runtime, actor, form, editing, failure)
    return redirect(f"/console/plans?done={'plan_updated' if editing else 'plan_created'}#plan-{plan.code}")


@router.post("/console/plans")
def create_plan(request: Request, runtime: RuntimeDep, actor: CatalogueEditor, form: Posted) -> Response:
    check_csrf(request, runtime, text(form, "csrf_token"))
    return _save_plan(request, runtime, actor, _submitted(form, text(form, "code", 40)), None)


@router.post("/console/plans/{plan_code}")
def update_plan(
    plan_code: str, request: Request, runtime: RuntimeDep, actor: CatalogueEditor, form: Posted
) -> Response:
    """The code and kind cannot change; lines already on the plan keep what they were granted."""
    check_csrf(request, runtime, text(form, "csrf_token"))
    return _save_plan(request, runtime, actor, _submitted(form, plan_code), plan_code)


@router.post("/console/plans/{plan_code}/retire")
def retire_plan(
    plan_code: str, request: Request, runtime: RuntimeDep, actor: CatalogueEditor, csrf_token: Token = ""
) -> Response:
    check_csrf(request, runtime, csrf_token)
    try:
        catalog.end_plan(runtime.unit_of_work, actor, plan_code)
    except DomainError as error:
        return page(request, runtime, actor, "not_found.html", status_for(error))
    return redirect(f"/console/plans?done=plan_retired#plan-{plan_code}")


# --- promotions -----------------------------------------------------------------------------------


def _promotion_form(runtime: Runtime, actor: Account) -> dict[str, Any]:
    return {
        "names": dict.fromkeys(TEXT_LANGUAGES, ""),
        "kind": PromotionKind.PERCENT_OFF.value,
        "percent_off": "",
        "amount_off": "",
        "code": "",
        "plan_codes": [],
        "first_renewal_only": False,
        "exclusive": False,
        "starts_at": local_input(runtime.clock.now(), actor.timezone),
        "ends_at": "",
        "max_uses": "",
        "max_uses_per_account": "",
        "bonus": [{"measure": "data_gb", "zone": "HK", "amount": ""} for _ in range(BONUS_ROWS)],
    }


def _promotions_page(
    request: Request,
    runtime: Runtime,
    actor: Account,
    form: dict[str, Any] | None = None,
    failure: DomainError | FormProblem | None = None,
) -> Response:
    shown = promotions.board(runtime.unit_of_work)
    rows = shown.promotions
    return page(
        request,
        runtime,
        actor,
        "promotions.html",
        status_for(failure) if failure else 200,
        failure=failure,
        promotions=rows,
        bonus_shown={
            p.id: [
                (*measure_of(Allowance(Unit(b["unit"]), Zone(b["zone"]), int(b["amount"]))), b["zone"]) for b in p.bonus
            ]
            for p in rows
        },
        running=shown.running,
        plan_codes=shown.plan_codes,
        form=form or _promotion_form(runtime, actor),
        measures=list(MEASURES),
        zones=[z.value for z in Zone],
        kinds=[k.value for k in PromotionKind],
    )


@router.get("/console/promotions")
def promotions_list(request: Request, runtime: RuntimeDep, actor: Staff) -> Response:
    return _promotions_page(request, runtime, actor)


@router.post("/console/promotions")
def create_promotion(request: Request, runtime: RuntimeDep, actor: Admin, form: Posted) -> Response:
    check_csrf(request, runtime, text(form, "csrf_token"))
    kind, code = text(form, "kind", 20), text(form, "code", 40)
    plan_codes = texts(form, "plan_codes", 40)
    bonus_measure, bonus_zone, bonus_amount = (
        texts(form, "bonus_measure", 20),
        texts(form, "bonus_zone", 4),
        texts(form, "bonus_amount", 30),
    )
    shown: dict[str, Any] = {
        "names": {lang: text(form, f"name_{lang}", 200) for lang in TEXT_LANGUAGES},
        "kind": kind,
        "percent_off": text(form, "percent_off", 10),
        "amount_off": text(form, "amount_off", 30),
        "code": code,
        "plan_codes": plan_codes,
        "first_renewal_only": bool(text(form, "first_renewal_only")),
        "exclusive": bool(text(form, "exclusive")),
        "starts_at": text(form, "starts_at", 40),
        "ends_at": text(form, "ends_at", 40),
        "max_uses": text(form, "max_uses", 20),
        "max_uses_per_account": text(form, "max_uses_per_account", 20),
        "bonus": [
            {"measure": m, "zone": z, "amount": a}
            for m, z, a in zip(bonus_measure, bonus_zone, bonus_amount, strict=False)
        ][:BONUS_ROWS],
    }
    try:
        if kind not in {k.value for k in PromotionKind}:
            raise FormProblem("required", "kind")
        promotion_kind = PromotionKind(kind)
        for lang in TEXT_LANGUAGES:
            if not shown["names"][lang].strip():
                raise FormProblem("required", f"name_{lang}")
        promo_code = code.strip() or None
        if promo_code is not None and not PROMO_CODE.fullmatch(promo_code):
            raise FormProblem("promo_code", "code")
        starts = parse_local_time(shown["starts_at"], actor.timezone, "starts_at")
        ends = parse_local_time(shown["ends_at"], actor.timezone, "ends_at") if shown["ends_at"].strip() else None
        percent = (
            parse_count(shown["percent_off"], "percent_off", 1, 100)
            if promotion_kind is PromotionKind.PERCENT_OFF
            else 0
        )
        amount = (
            parse_money(shown["amount_off"], "HKD", "amount_off") if promotion_kind is PromotionKind.AMOUNT_OFF else 0
        )
        if promotion_kind is PromotionKind.AMOUNT_OFF and amount <= 0:
            raise FormProblem("amount", "amount_off")
        bonus = read_allowances(bonus_measure, bonus_zone, bonus_amount, "bonus")
        form_input = promotions.PromotionInput(
            name={lang: shown["names"][lang].strip() for lang in TEXT_LANGUAGES},
            kind=promotion_kind,
            starts_at=starts,
            ends_at=ends,
            percent_off=percent,
            amount_off=amount,
            bonus=tuple(bonus) if promotion_kind is PromotionKind.BONUS else (),
            code=promo_code,
            plan_codes=tuple(plan_codes) or None,
            first_renewal_only=shown["first_renewal_only"],
            exclusive=shown["exclusive"] and promo_code is not None,
            max_uses=optional_count(shown["max_uses"], "max_uses"),
            max_uses_per_account=optional_count(shown["max_uses_per_account"], "max_uses_per_account"),
        )
        promotions.add(runtime.unit_of_work, actor, form_input)
    except (DomainError, FormProblem) as failure:
        return _promotions_page(request, runtime, actor, shown, failure)
    return redirect("/console/promotions?done=promotion_created")


@router.post("/console/promotions/{promotion_id}/deactivate")
def deactivate_promotion(
    promotion_id: int, request: Request, runtime: RuntimeDep, actor: Admin, csrf_token: Token = ""
) -> Response:
    check_csrf(request, runtime, csrf_token)
    try:
        promotions.end(runtime.unit_of_work, actor, promotion_id)
    except DomainError as error:
        return _promotions_page(request, runtime, actor, failure=error)
    return redirect(f"/console/promotions?done=promotion_deactivated#promotion-{promotion_id}")


# --- rating groups --------------------------------------------------------------------------------

RATED_UNITS = [Unit.DATA_BYTES, Unit.VOICE_SECONDS, Unit.SMS]


def _rating_page(
    request: Request, runtime: Runtime, actor: Account, failure: DomainError | FormProblem | None = None
) -> Response:
    return page(
        request,
        runtime,
        actor,
        "rating_groups.html",
        status_for(failure) if failure else 200,
        failure=failure,
        mappings=rating.mappings(runtime.unit_of_work),
        units=[u.value for u in RATED_UNITS],
    )


@router.get("/console/rating-groups")
def rating_groups(request: Request, runtime: RuntimeDep, actor: Staff) -> Response:
    return _rating_page(request, runtime, actor)


def _rating_key(form: Posted) -> tuple[int, int | None]:
    group = parse_count(text(form, "rating_group", 20), "rating_group", maximum=rating.UNSIGNED32)
    service = text(form, "service_identifier", 20)
    return group, parse_count(service, "service_identifier", maximum=rating.UNSIGNED32) if service.strip() else None


@router.post("/console/rating-groups")
def set_rating_group(request: Request, runtime: RuntimeDep, actor: CatalogueEditor, form: Posted) -> Response:
    """Charge a rating group (or one service of it) in a unit from the next request on."""
    check_csrf(request, runtime, text(form, "csrf_token"))
    try:
        group, service = _rating_key(form)
        unit = text(form, "unit", 20)
        if unit not in {u.value for u in RATED_UNITS}:
            raise FormProblem("required", "unit")
        rating.set_mapping(runtime.unit_of_work, actor, group, service, Unit(unit))
    except (DomainError, FormProblem) as failure:
        return _rating_page(request, runtime, actor, failure)
    return redirect(f"/console/rating-groups?done=rating_group_set#rating-group-{group}")


@router.post("/console/rating-groups/remove")
def remove_rating_group(request: Request, runtime: RuntimeDep, actor: CatalogueEditor, form: Posted) -> Response:
    """Stop rating it: its services are refused (5031) from the next request on."""
    check_csrf(request, runtime, text(form, "csrf_token"))
    try:
        group, service = _rating_key(form)
        rating.remove_mapping(runtime.unit_of_work, actor, group, service)
    except (DomainError, FormProblem) as failure:
        return _rating_page(request, runtime, actor, failure)
    return redirect("/console/rating-groups?done=rating_group_removed")
