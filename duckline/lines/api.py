"""A subscriber's lines: status and balances, eSIM and QR code, features; staff activation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from duckline.accounts.models import Account
from duckline.accounts.roles import LINE_OPERATORS, STAFF, USAGE_REPORTERS
from duckline.billing.schemas import AutoRenewIn
from duckline.catalog.api import Language
from duckline.catalog.schemas import plan_out_of
from duckline.core import qr
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines import care as line_care
from duckline.lines import service as lines
from duckline.lines.care_schemas import (
    EsimMovedOut,
    EsimProfileStateOut,
    ProofCodeIn,
    ProofCodeOut,
    ProofIn,
    ReportLostIn,
    ResumeIn,
)
from duckline.lines.esim import activation_code
from duckline.lines.schemas import ActivateIn, EsimOut, FeaturesIn, LineOut, LineStatusOut, line_out
from duckline.lines.states import Suspension
from duckline.web.deps import (
    RuntimeDep,
    Subscriber,
    SubscriberOrStaff,
    client_address,
    require_roles,
)
from duckline.web.fields import Cursor, PathId, QueryId
from duckline.web.openapi import errors
from duckline.web.schemas import Page

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
    found = lines.list_lines(runtime.unit_of_work, viewer, account_id, cursor, limit)
    return Page[LineOut](items=[line_out(v) for v in found.items], next_cursor=found.next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=LineOut, responses=errors(409, 503))
def open_line(runtime: RuntimeDep, viewer: Subscriber) -> LineOut:
    """Another line for the caller, within the per-identity limit."""
    return line_out(lines.open_another(runtime.unit_of_work, viewer))


@router.get("/{line_id}/status", response_model=LineStatusOut)
def line_status(line_id: PathId, runtime: RuntimeDep, viewer: SubscriberOrStaff, lang: Language) -> LineStatusOut:
    """Each allowance used and remaining, the expiry, and warnings."""
    return _status_out(lines.line_status(runtime.unit_of_work, viewer, line_id, lang))


@router.get("/by-msisdn/{msisdn}/status", response_model=LineStatusOut)
def line_status_by_msisdn(
    msisdn: Annotated[str, Path(max_length=30)], runtime: RuntimeDep, viewer: SubscriberOrStaff, lang: Language
) -> LineStatusOut:
    return _status_out(lines.number_status(runtime.unit_of_work, viewer, msisdn, lang))


def _status_out(answer: lines.StatusAnswer) -> LineStatusOut:
    return LineStatusOut.of(answer.view, plan_out_of(answer.plan) if answer.plan else None)


@router.get("/{line_id}/esim", response_model=EsimOut)
def esim(line_id: PathId, runtime: RuntimeDep, viewer: SubscriberOrStaff) -> EsimOut:
    found = lines.esim_of(runtime.unit_of_work, viewer, line_id)
    return EsimOut.of_id(found.line_id, found.profile)


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
    profile = lines.esim_of(runtime.unit_of_work, viewer, line_id).profile
    code = activation_code(profile.smdp_address, profile.matching_id)
    if fmt == "png":
        return Response(qr.qr_png(code), media_type="image/png", headers={"Cache-Control": "no-store"})
    return Response(qr.qr_svg(code), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.patch("/{line_id}/features", response_model=LineOut, responses=errors(409))
def set_features(line_id: PathId, body: FeaturesIn, runtime: RuntimeDep, viewer: SubscriberOrStaff) -> LineOut:
    """Turn voicemail and caller ID on or off."""
    return line_out(lines.change_features(runtime.unit_of_work, viewer, line_id, body.voicemail, body.caller_id))


@router.patch("/{line_id}/auto-renew", response_model=LineOut, responses=errors(409))
def set_auto_renew(line_id: PathId, body: AutoRenewIn, runtime: RuntimeDep, viewer: Subscriber) -> LineOut:
    """Renew automatically before expiry with the card saved at an earlier card payment (409
    saved_method_required without one: Alipay and WeChat Pay cannot be charged automatically)."""
    return line_out(lines.change_auto_renew(runtime.unit_of_work, viewer, line_id, body.enabled))


@router.post("/{line_id}/activate", response_model=LineOut, responses=errors(409))
def activate(line_id: PathId, body: ActivateIn, runtime: RuntimeDep, actor: Operator) -> LineOut:
    """Staff: start a pending line on a plan (e.g. sold with a prepaid voucher in a shop)."""
    return line_out(lines.start_line(runtime.unit_of_work, actor, line_id, body.plan_code))


# --- Self-care: a lost or stolen phone, resuming, moving the eSIM ----------------------------


@router.post("/{line_id}/report-lost", response_model=LineOut, responses=errors(404, 409))
def report_lost(line_id: PathId, body: ReportLostIn, runtime: RuntimeDep, viewer: Subscriber) -> LineOut:
    """Stop calls, SMS and data on the line at once: the network's open sessions are ended and no
    more quota is granted. The number, plan and expiry stay; reporting again changes nothing."""
    return line_out(line_care.report(runtime.unit_of_work, viewer, line_id, Suspension(body.reason)))


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
    return ProofCodeOut(sent_to=line_care.send_code(runtime.unit_of_work, viewer, line_id, purpose))


@router.post("/{line_id}/resume", response_model=LineOut, responses=errors(403, 404, 409, 429))
def resume(
    line_id: PathId, body: ResumeIn, request: Request, runtime: RuntimeDep, viewer: SubscriberOrStaff
) -> LineOut:
    """Turn a suspended line back on. The subscriber proves it is them (password, or an emailed
    code); staff who may operate lines give a reason instead. A wrong proof changes nothing."""
    if viewer.role in STAFF:
        return line_out(line_care.staff_resume_line(runtime.unit_of_work, viewer, line_id, body.reason or ""))
    _limit(runtime, request, "login", viewer)
    return line_out(line_care.resume_line(runtime.unit_of_work, viewer, line_id, body.password, body.code))


@router.post("/{line_id}/esim/move", response_model=EsimMovedOut, responses=errors(404, 409, 429))
def move_esim(
    line_id: PathId, body: ProofIn, request: Request, runtime: RuntimeDep, viewer: Subscriber
) -> EsimMovedOut:
    """Issue a new eSIM activation code (and ICCID) to install on a new phone; the old profile is
    refused from now on. Needs the password (or an emailed code); a few moves a day at most."""
    _limit(runtime, request, "login", viewer)
    moved = line_care.move(runtime.unit_of_work, viewer, line_id, body.password, body.code)
    return EsimMovedOut(line=line_out(moved.line), esim=EsimOut.of_id(line_id, moved.profile))


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
    state = line_care.profile_state(runtime.unit_of_work, iccid, matching_id)
    return EsimProfileStateOut(
        iccid=state.iccid, msisdn=state.msisdn, line_id=state.line_id, in_service=state.in_service
    )
