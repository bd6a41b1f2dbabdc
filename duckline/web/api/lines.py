"""A subscriber's lines: status and balances, eSIM and QR code, features; staff activation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlalchemy import select

from duckline.adapters import qr
from duckline.adapters.db.tables import Account, Line
from duckline.adapters.db.types import is_id
from duckline.domain.esim import activation_code
from duckline.domain.lines import Suspension, can_use_service
from duckline.domain.roles import LINE_OPERATORS, STAFF, USAGE_REPORTERS
from duckline.errors import DomainError, ErrorCode
from duckline.services import catalog, holder_proof, line_care, lines
from duckline.web.api.plans import Language, render
from duckline.web.billing_schemas import AutoRenewIn
from duckline.web.deps import (
    RuntimeDep,
    Subscriber,
    SubscriberOrStaff,
    client_address,
    require_roles,
)
from duckline.web.fields import Cursor, PathId, QueryId
from duckline.web.line_care_schemas import (
    EsimMovedOut,
    EsimProfileStateOut,
    ProofCodeIn,
    ProofCodeOut,
    ProofIn,
    ReportLostIn,
    ResumeIn,
)
from duckline.web.openapi import errors
from duckline.web.pagination import page
from duckline.web.schemas import ActivateIn, EsimOut, FeaturesIn, LineOut, LineStatusOut, Page

router = APIRouter(prefix="/lines", tags=["lines"])
Operator = Annotated[Account, Depends(require_roles(LINE_OPERATORS))]
Network = Annotated[Account, Depends(require_roles(USAGE_REPORTERS))]  # the SM-DP+ and network elements


@router.get("", response_model=Page[LineOut], responses=errors(403))
def list_lines(
    runtime: RuntimeDep,
    viewer: SubscriberOrStaff,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    account_id: QueryId = None,
) -> Page[LineOut]:
    """The caller's lines; staff may list any account's lines with ?account_id=."""
    owner = viewer.id
    if account_id is not None and account_id != viewer.id:
        if viewer.role not in STAFF:
            raise DomainError(ErrorCode.FORBIDDEN)
        if not is_id(account_id):
            raise DomainError(ErrorCode.NOT_FOUND, field="account_id")
        owner = account_id
    with runtime.unit_of_work() as uow:
        rows, next_cursor = page(uow.session, select(Line).where(Line.account_id == owner), Line.id, cursor, limit)
        items = [LineOut.of(r, periods=lines.schedule(uow, r)) for r in rows]
        return Page[LineOut](items=items, next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=LineOut, responses=errors(409, 503))
def open_line(runtime: RuntimeDep, viewer: Subscriber) -> LineOut:
    """Another line for the caller, within the per-identity limit."""
    with runtime.unit_of_work() as uow:
        return LineOut.of(lines.open_line(uow, viewer))


@router.get("/{line_id}/status", response_model=LineStatusOut)
def line_status(line_id: PathId, runtime: RuntimeDep, viewer: SubscriberOrStaff, lang: Language) -> LineStatusOut:
    """Each allowance used and remaining, the expiry, and warnings."""
    with runtime.unit_of_work() as uow:
        view = lines.status(uow, lines.visible_line(uow, viewer, line_id))
        return LineStatusOut.of(view, render(uow, [view.plan], lang)[0] if view.plan else None)


@router.get("/by-msisdn/{msisdn}/status", response_model=LineStatusOut)
def line_status_by_msisdn(
    msisdn: Annotated[str, Path(max_length=30)], runtime: RuntimeDep, viewer: SubscriberOrStaff, lang: Language
) -> LineStatusOut:
    with runtime.unit_of_work() as uow:
        line = lines.visible_line_by_msisdn(uow, viewer, msisdn)
        view = lines.status(uow, line)
        return LineStatusOut.of(view, render(uow, [view.plan], lang)[0] if view.plan else None)


@router.get("/{line_id}/esim", response_model=EsimOut)
def esim(line_id: PathId, runtime: RuntimeDep, viewer: SubscriberOrStaff) -> EsimOut:
    with runtime.unit_of_work() as uow:
        line = lines.visible_line(uow, viewer, line_id)
        return EsimOut.of(line, lines.esim_profile(uow, line))


@router.get(
    "/{line_id}/esim/qr.{fmt}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}},
)
def esim_qr(
    line_id: PathId, fmt: Annotated[str, Path(max_length=10)], runtime: RuntimeDep, viewer: SubscriberOrStaff
) -> Response:
    """The activation code as a QR image to scan with the phone's camera."""
    if fmt not in ("png", "svg"):
        raise DomainError(ErrorCode.NOT_FOUND)
    with runtime.unit_of_work() as uow:
        profile = lines.esim_profile(uow, lines.visible_line(uow, viewer, line_id))
        code = activation_code(profile.smdp_address, profile.matching_id)
    if fmt == "png":
        return Response(qr.qr_png(code), media_type="image/png", headers={"Cache-Control": "no-store"})
    return Response(qr.qr_svg(code), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.patch("/{line_id}/features", response_model=LineOut, responses=errors(409))
def set_features(line_id: PathId, body: FeaturesIn, runtime: RuntimeDep, viewer: SubscriberOrStaff) -> LineOut:
    """Turn voicemail and caller ID on or off."""
    with runtime.unit_of_work() as uow:
        line = lines.visible_line(uow, viewer, line_id)
        changed = lines.set_features(uow, viewer, line, body.voicemail, body.caller_id)
        return LineOut.of(changed, periods=lines.schedule(uow, changed))


@router.patch("/{line_id}/auto-renew", response_model=LineOut, responses=errors(409))
def set_auto_renew(line_id: PathId, body: AutoRenewIn, runtime: RuntimeDep, viewer: Subscriber) -> LineOut:
    """Renew automatically before expiry with the card saved at an earlier card payment (409
    saved_method_required without one: Alipay and WeChat Pay cannot be charged automatically)."""
    with runtime.unit_of_work() as uow:
        line = lines.visible_line(uow, viewer, line_id)
        changed = lines.set_auto_renew(uow, viewer, line, body.enabled)
        return LineOut.of(changed, periods=lines.schedule(uow, changed))


@router.post("/{line_id}/activate", response_model=LineOut, responses=errors(409))
def activate(line_id: PathId, body: ActivateIn, runtime: RuntimeDep, actor: Operator) -> LineOut:
    """Staff: start a pending line on a plan (e.g. sold with a prepaid voucher in a shop)."""
    with runtime.unit_of_work() as uow:
        line = lines.visible_line(uow, actor, line_id)
        plan = catalog.get_plan(uow, body.plan_code)
        return LineOut.of(lines.activate(uow, actor, line, plan), plan.code)


# --- Self-care: a lost or stolen phone, resuming, moving the eSIM ----------------------------


@router.post("/{line_id}/report-lost", response_model=LineOut, responses=errors(404, 409))
def report_lost(line_id: PathId, body: ReportLostIn, runtime: RuntimeDep, viewer: Subscriber) -> LineOut:
    """Stop calls, SMS and data on the line at once: the network's open sessions are ended and no
    more quota is granted. The number, plan and expiry stay; reporting again changes nothing."""
    with runtime.unit_of_work() as uow:
        return LineOut.of(line_care.report_lost(uow, viewer, line_id, Suspension(body.reason)))


@router.post(
    "/{line_id}/proof-code",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ProofCodeOut,
    responses=errors(409, 429),
)
def proof_code(
    line_id: PathId, body: ProofCodeIn, request: Request, runtime: RuntimeDep, viewer: Subscriber
) -> ProofCodeOut:
    """Email the account holder a code to resume the line or move its eSIM (never by SMS: the
    phone may be the lost one)."""
    _limit(runtime, request, "otp", viewer)
    purpose = line_care.RESUME if body.purpose == "resume" else line_care.ESIM_MOVE
    with runtime.unit_of_work() as uow:
        sent_to = line_care.send_proof_code(uow, viewer, line_id, purpose)
    return ProofCodeOut(sent_to=holder_proof.masked_email(sent_to))


@router.post("/{line_id}/resume", response_model=LineOut, responses=errors(403, 404, 409, 429))
def resume(
    line_id: PathId, body: ResumeIn, request: Request, runtime: RuntimeDep, viewer: SubscriberOrStaff
) -> LineOut:
    """Turn a suspended line back on. The subscriber proves it is them (password, or an emailed
    code); staff who may operate lines give a reason instead. A wrong proof changes nothing."""
    if viewer.role in STAFF:
        with runtime.unit_of_work() as uow:
            return LineOut.of(line_care.staff_resume(uow, viewer, line_id, body.reason or ""))
    _limit(runtime, request, "login", viewer)
    with runtime.unit_of_work() as uow:
        return LineOut.of(line_care.resume(uow, viewer, line_id, body.password, body.code))


@router.post("/{line_id}/esim/move", response_model=EsimMovedOut, responses=errors(404, 409, 429))
def move_esim(
    line_id: PathId, body: ProofIn, request: Request, runtime: RuntimeDep, viewer: Subscriber
) -> EsimMovedOut:
    """Issue a new eSIM activation code (and ICCID) to install on a new phone; the old profile is
    refused from now on. Needs the password (or an emailed code); a few moves a day at most."""
    _limit(runtime, request, "login", viewer)
    with runtime.unit_of_work() as uow:
        profile = line_care.move_esim(uow, viewer, line_id, body.password, body.code)
        line = lines.visible_line(uow, viewer, line_id)
        return EsimMovedOut(line=LineOut.of(line), esim=EsimOut.of(line, profile))


def _limit(runtime: RuntimeDep, request: Request, rule: str, viewer: Account) -> None:
    if not runtime.rate_limits.hit(rule, f"ip:{client_address(request)}", f"account:{viewer.id}"):
        raise DomainError(ErrorCode.RATE_LIMITED)


esim_router = APIRouter(prefix="/esim", tags=["lines"])


@esim_router.get("/profile", response_model=EsimProfileStateOut, responses=errors(404, 409, 422))
def esim_profile_state(
    runtime: RuntimeDep,
    caller: Network,
    iccid: Annotated[str | None, Query(max_length=20)] = None,
    matching_id: Annotated[str | None, Query(max_length=64)] = None,
) -> EsimProfileStateOut:
    """For the SM-DP+ and the network: may this profile (by ICCID or matching ID) download or
    attach? A profile replaced when its eSIM moved to a new phone answers 409 esim_profile_retired."""
    with runtime.unit_of_work() as uow:
        profile, line = line_care.profile_in_use(uow, iccid, matching_id)
        return EsimProfileStateOut(
            iccid=profile.iccid,
            msisdn=line.msisdn,
            line_id=line.id,
            in_service=can_use_service(line.status, line.suspension),
        )
