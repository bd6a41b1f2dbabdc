"""Console: the delivery attempts, one row per try of an SMS, an email, an integrator's webhook or
the sandbox's webhook, newest first and filtered by kind and outcome; and every try at one item."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.accounts.roles import DELIVERY_READERS
from duckline.core.errors import DomainError
from duckline.messaging import delivery_log
from duckline.staff.console_common import page, status_for
from duckline.web.deps import RuntimeDep
from duckline.web.portal.session import staff_with

router = APIRouter(include_in_schema=False)
DeliveryReader = Annotated[Account, staff_with(DELIVERY_READERS)]


@router.get("/console/deliveries")
def deliveries(
    request: Request,
    runtime: RuntimeDep,
    actor: DeliveryReader,
    kind: str = "",
    outcome: str = "",
    cursor: str | None = None,
) -> Response:
    form = {"kind": kind[:20], "outcome": outcome[:20]}
    filtered = {k: v for k, v in form.items() if v}
    context: dict[str, Any] = {
        "form": form,
        "kinds": delivery_log.KINDS,
        "outcomes": delivery_log.OUTCOMES,
        "filtered": bool(filtered),
        "first_page": not cursor,
        "newest": "/console/deliveries" + (f"?{urlencode(filtered)}" if filtered else ""),
    }
    try:
        found = delivery_log.attempt_page(
            runtime.unit_of_work, actor, delivery_log.Filters(form["kind"], form["outcome"]), cursor
        )
    except DomainError as failure:
        return page(
            request, runtime, actor, "deliveries.html", status_for(failure), failure, attempts=[], older=None, **context
        )
    older = f"/console/deliveries?{urlencode({**filtered, 'cursor': found.next_cursor})}" if found.next_cursor else None
    return page(request, runtime, actor, "deliveries.html", attempts=found.attempts, older=older, **context)


@router.get("/console/deliveries/{subject}/{subject_id}")
def delivery(subject: str, subject_id: int, request: Request, runtime: RuntimeDep, actor: DeliveryReader) -> Response:
    try:
        item = delivery_log.item_attempts(runtime.unit_of_work, actor, subject, subject_id)
    except DomainError as failure:
        return page(request, runtime, actor, "not_found.html", status_for(failure))
    return page(request, runtime, actor, "delivery.html", item=item)
