"""The subscriber's page for a new SIP password: the line page's "SIP account" section
(sip/templates/portal/_sip_account.html) posts here with the CSRF token, and the answer shows the
password once, with a QR code of it for a softphone, and is not cached."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.core import qr
from duckline.core.errors import DomainError, ErrorCode
from duckline.sip import flows
from duckline.web.deps import RuntimeDep, client_address
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import check_csrf, error_text, page_language, render
from duckline.web.portal.session import SignedIn

router = APIRouter(include_in_schema=False)


@router.post("/lines/{line_id}/sip/password")
def reset_sip_password(
    line_id: int,
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """As POST /api/v1/lines/{id}/sip/password."""
    check_csrf(request, runtime, csrf_token)
    try:
        if not runtime.rate_limits.hit("sip_reset", f"ip:{client_address(request)}", f"account:{account.id}"):
            raise DomainError(ErrorCode.RATE_LIMITED)
        reset = flows.reset_password(runtime.unit_of_work, account, line_id)
    except DomainError as error:
        if error.error is ErrorCode.NOT_FOUND:
            return render(request, runtime, "portal/line_not_found.html", account, status_code=404)
        language = page_language(request, account)
        return render(
            request,
            runtime,
            "portal/sip_password.html",
            account,
            status_code=STATUS[error.error.kind],
            line_id=line_id,
            line=None,
            error=error_text(language, error),
        )
    response = render(
        request,
        runtime,
        "portal/sip_password.html",
        account,
        line_id=line_id,
        line=reset.details.line,
        sip=reset.details,
        password=reset.password,
        qr_image=qr.qr_svg_data_uri(reset.provisioning_uri),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


__all__ = ["router"]
