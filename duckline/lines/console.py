"""Console: staff who may operate lines turn a suspended line back on, with a reason (audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.accounts.roles import LINE_OPERATORS
from duckline.core.errors import DomainError
from duckline.lines import care as line_care
from duckline.staff.console_common import FormProblem, page, required_text
from duckline.staff.console_subscribers import _detail
from duckline.web.deps import RuntimeDep
from duckline.web.portal.rendering import check_csrf, redirect
from duckline.web.portal.session import staff_with

router = APIRouter(include_in_schema=False)
LineOperator = Annotated[Account, staff_with(LINE_OPERATORS)]


@router.post("/console/lines/{line_id}/resume")
def resume_line(
    line_id: int,
    request: Request,
    runtime: RuntimeDep,
    actor: LineOperator,
    reason: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """As POST /api/v1/lines/{id}/resume by staff: the reason is required and kept in the audit log."""
    check_csrf(request, runtime, csrf_token)
    account_id = line_care.line_owner(runtime.unit_of_work, line_id)
    if account_id is None:
        return page(request, runtime, actor, "not_found.html", 404)
    try:
        cleaned = required_text(reason, "reason", line_care.STAFF_REASON_MAX)
        line_care.staff_resume_line(runtime.unit_of_work, actor, line_id, cleaned)
    except (DomainError, FormProblem) as failure:
        return _detail(request, runtime, actor, account_id, failure, resume_line=line_id, resume_reason=reason)
    return redirect(f"/console/subscribers/{account_id}?done=line_resumed#line-{line_id}")
