"""Subscriber pages for a line's self-care: report the phone lost or stolen, turn the line back on
with the password (or a code emailed to the holder), move the eSIM to a new phone.

Each action has a confirmation page (GET) and a form that posts with the CSRF token; the pages
call the same services as the API (lines/care.py) and hold no rule of their own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts import holder_proof
from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines import care as line_care
from duckline.lines import service as lines
from duckline.lines.esim import activation_code
from duckline.lines.states import Suspension
from duckline.runtime import Runtime
from duckline.web.deps import RuntimeDep, client_address
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import check_csrf, error_text, page_language, redirect, render
from duckline.web.portal.session import SignedIn

router = APIRouter(include_in_schema=False)
Password = Annotated[str, Form(max_length=200)]
Code = Annotated[str, Form(max_length=20)]
Csrf = Annotated[str, Form()]


def _page(
    request: Request,
    runtime: Runtime,
    account: Account,
    template: str,
    line_id: int,
    error: DomainError | None = None,
    **context: Any,
) -> Response:
    try:
        line = lines.shown_line(runtime.unit_of_work, account, line_id)
    except DomainError as missing:
        if missing.error is not ErrorCode.NOT_FOUND:
            raise
        return render(request, runtime, "portal/line_not_found.html", account, status_code=404)
    language = page_language(request, account)
    return render(
        request,
        runtime,
        f"portal/{template}",
        account,
        status_code=STATUS[error.error.kind] if error else 200,
        line=line,
        error=error_text(language, error) if error else None,
        error_field=error.field if error else None,
        email_hint=holder_proof.masked_email(account.email) if account.email else None,
        **context,
    )


def _limited(runtime: Runtime, request: Request, rule: str, account: Account) -> DomainError | None:
    if runtime.rate_limits.hit(rule, f"ip:{client_address(request)}", f"account:{account.id}"):
        return None
    return DomainError(ErrorCode.RATE_LIMITED)


# --- A lost or stolen phone -------------------------------------------------------------------


@router.get("/lines/{line_id}/report-lost")
def report_lost_page(line_id: int, request: Request, runtime: RuntimeDep, account: SignedIn) -> Response:
    """What reporting does, and the confirmation."""
    return _page(request, runtime, account, "line_report_lost.html", line_id)


@router.post("/lines/{line_id}/report-lost")
def report_lost(
    line_id: int,
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    csrf_token: Csrf = "",
    reason: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """As POST /api/v1/lines/{id}/report-lost."""
    check_csrf(request, runtime, csrf_token)
    try:
        if reason not in {s.value for s in Suspension}:
            raise DomainError(ErrorCode.SUSPENSION_REASON_INVALID, field="reason")
        line_care.report(runtime.unit_of_work, account, line_id, Suspension(reason))
    except DomainError as error:
        return _page(request, runtime, account, "line_report_lost.html", line_id, error, reason=reason)
    return redirect(f"/lines/{line_id}?done=suspended#line-care")


@router.get("/lines/{line_id}/resume")
def resume_page(line_id: int, request: Request, runtime: RuntimeDep, account: SignedIn) -> Response:
    """Prove it is the account holder to turn the line back on."""
    return _page(request, runtime, account, "line_resume.html", line_id)


@router.post("/lines/{line_id}/resume")
def resume(
    line_id: int,
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    csrf_token: Csrf = "",
    action: Annotated[str, Form(max_length=10)] = "password",
    password: Password = "",
    code: Code = "",
) -> Response:
    """As POST /api/v1/lines/{id}/resume (action "password" or "code"), or …/proof-code ("send")."""
    check_csrf(request, runtime, csrf_token)
    if limited := _limited(runtime, request, "otp" if action == "send" else "login", account):
        return _page(request, runtime, account, "line_resume.html", line_id, limited)
    try:
        if action == "send":
            line_care.send_code(runtime.unit_of_work, account, line_id, line_care.RESUME)
        else:
            line_care.resume_line(runtime.unit_of_work, account, line_id, password or None, code.strip() or None)
    except DomainError as error:
        return _page(request, runtime, account, "line_resume.html", line_id, error, code_sent=action == "code")
    if action == "send":
        return _page(request, runtime, account, "line_resume.html", line_id, code_sent=True)
    return redirect(f"/lines/{line_id}?done=resumed#line-care")


# --- Moving the eSIM --------------------------------------------------------------------------


@router.get("/lines/{line_id}/esim/move")
def move_esim_page(line_id: int, request: Request, runtime: RuntimeDep, account: SignedIn) -> Response:
    """What moving does (the eSIM on the old phone stops working), and the password to confirm."""
    return _page(request, runtime, account, "line_esim_move.html", line_id)


@router.post("/lines/{line_id}/esim/move")
def move_esim(
    line_id: int,
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    csrf_token: Csrf = "",
    password: Password = "",
) -> Response:
    """As POST /api/v1/lines/{id}/esim/move. The new code is shown here, once, not stored in the
    page's address: reloading it asks before sending the form again."""
    check_csrf(request, runtime, csrf_token)
    if limited := _limited(runtime, request, "login", account):
        return _page(request, runtime, account, "line_esim_move.html", line_id, limited)
    try:
        profile = line_care.move(runtime.unit_of_work, account, line_id, password or None, None).profile
        moved = {"iccid": profile.iccid, "smdp_address": profile.smdp_address, "matching_id": profile.matching_id}
    except DomainError as error:
        return _page(request, runtime, account, "line_esim_move.html", line_id, error)
    response = _page(
        request,
        runtime,
        account,
        "line_esim_moved.html",
        line_id,
        profile=moved,
        code=activation_code(moved["smdp_address"], moved["matching_id"]),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


__all__ = ["router"]
