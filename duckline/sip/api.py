"""A line's SIP account: where and as whom its phone registers, and a new password."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from duckline.core.errors import DomainError, ErrorCode
from duckline.sip import flows
from duckline.sip.schemas import SipAccountOut, SipPasswordOut
from duckline.web.deps import RuntimeDep, Subscriber, SubscriberOrStaff, client_address
from duckline.web.fields import PathId
from duckline.web.openapi import errors

router = APIRouter(prefix="/lines", tags=["sip"])


@router.get("/{line_id}/sip", response_model=SipAccountOut, responses=errors(404, 409))
def sip_account(line_id: PathId, runtime: RuntimeDep, viewer: SubscriberOrStaff) -> SipAccountOut:
    """The line's SIP username, domain and server (409 sip_account_missing before activation)."""
    return SipAccountOut.of(flows.details(runtime.unit_of_work, viewer, line_id))


@router.post("/{line_id}/sip/password", response_model=SipPasswordOut, responses=errors(404, 409, 429))
def reset_sip_password(
    line_id: PathId, request: Request, response: Response, runtime: RuntimeDep, viewer: Subscriber
) -> SipPasswordOut:
    """A new SIP password, in this answer only (Duckline keeps its digest hashes, not the password);
    the old one stops working at once. Only the line's holder may ask; a few times an hour."""
    if not runtime.rate_limits.hit("sip_reset", f"ip:{client_address(request)}", f"account:{viewer.id}"):
        raise DomainError(ErrorCode.RATE_LIMITED)
    response.headers["Cache-Control"] = "no-store"
    return SipPasswordOut.of_reset(flows.reset_password(runtime.unit_of_work, viewer, line_id))
