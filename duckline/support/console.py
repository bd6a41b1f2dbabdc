"""Console: the support desk. The queue of subscriber tickets and reconciliation cases (filters,
oldest first), and a ticket's page: the conversation with internal notes, reply, assignment,
closing with a reason, and the orders, payments and cases it concerns. Support and admin only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from babel.dates import format_timedelta
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.core import i18n
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.staff.console_common import FormProblem, page, status_for
from duckline.support import conversations as support
from duckline.support import desk as support_desk
from duckline.web.deps import RuntimeDep
from duckline.web.portal.rendering import check_csrf, page_language, redirect
from duckline.web.portal.session import staff_with

router = APIRouter(include_in_schema=False)
Desk = Annotated[Account, staff_with(support_desk.DESK_ROLES)]
Token = Annotated[str, Form()]
Body = Annotated[str, Form(max_length=support.BODY_MAX + 100)]
QUEUE_PAGE = 25


def ages(request: Request, runtime: Runtime, actor: Account) -> Any:
    """How long ago, as a reader says it: "3 days", "5 hours"."""
    locale = i18n.babel_locale(page_language(request, actor))
    now = runtime.clock.now()

    def age(moment: datetime | None) -> str:
        return format_timedelta(now - moment, threshold=1.5, locale=locale) if moment else "—"

    return age


def _filters(request: Request) -> support_desk.Filters:
    """The queue's filters from the query string; an unknown value is refused with 422."""
    q = request.query_params
    status = q.get("status", "open")
    older = q.get("older_than", "")
    if older and not (older.isdigit() and len(older) < 5):
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="older_than_days")
    language = q.get("language") or None
    if language is not None and language not in i18n.LANGUAGES:
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="language")
    return support_desk.Filters(
        status=status if status != "all" else None,
        older_than_days=int(older) if older else None,
        topic=q.get("topic") or None,
        language=language,
        assigned=q.get("assigned", "anyone") or "anyone",
        kind=q.get("kind") or None,
    ).check()


@router.get("/console/support")
def support_queue(request: Request, runtime: RuntimeDep, actor: Desk, cursor: str | None = None) -> Response:
    try:
        filters = _filters(request)
        found = support_desk.queue_page(runtime.unit_of_work, actor, filters, cursor, QUEUE_PAGE)
    except DomainError as error:
        return page(request, runtime, actor, "support.html", status_for(error), failure=error, **_empty_queue())
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    return page(
        request,
        runtime,
        actor,
        "support.html",
        tickets=found.tickets,
        filters=filters,
        accounts=found.people,
        latest=found.latest,
        next_cursor=found.next_cursor,
        params=params,
        age=ages(request, runtime, actor),
        **_choices(),
    )


def _empty_queue() -> dict[str, Any]:
    return {
        "tickets": [],
        "filters": support_desk.Filters(),
        "accounts": {},
        "latest": {},
        "next_cursor": None,
        "params": {},
        "age": lambda moment: "—",
        **_choices(),
    }


def _choices() -> dict[str, Any]:
    return {
        "topics": support.TOPICS,
        "age_choices": support_desk.AGES,
        "languages_shown": i18n.LANGUAGES,
        "close_reasons": support_desk.CLOSE_REASONS,
    }


def _ticket_context(shown: support_desk.TicketView) -> dict[str, Any]:
    return {
        "ticket": shown.ticket,
        "desk_status": support_desk.desk_status(shown.ticket),
        "is_case": support_desk.is_case(shown.ticket),
        "messages": shown.messages,
        "links": shown.links,
        "linked_orders": shown.orders,
        "linked_payments": shown.payments,
        "linked_cases": shown.cases,
        "case_order": shown.orders.get(shown.ticket.order_id or 0),
        "staff": shown.staff,
        "people": shown.people,
        "close_reasons": support_desk.CLOSE_REASONS,
    }


def _ticket_page(
    request: Request,
    runtime: Runtime,
    actor: Account,
    ticket_id: int,
    failure: DomainError | FormProblem | None = None,
    **form: Any,
) -> Response:
    try:
        context = _ticket_context(support_desk.shown(runtime.unit_of_work, ticket_id))
    except DomainError as error:
        return page(request, runtime, actor, "not_found.html", status_for(error))
    return page(
        request,
        runtime,
        actor,
        "ticket.html",
        status_for(failure) if failure else 200,
        failure=failure,
        form=form,
        age=ages(request, runtime, actor),
        **context,
    )


@router.get("/console/support/{ticket_id}")
def ticket_page(ticket_id: int, request: Request, runtime: RuntimeDep, actor: Desk) -> Response:
    return _ticket_page(request, runtime, actor, ticket_id)


def _act(
    request: Request, runtime: Runtime, actor: Account, ticket_id: int, done: str, action: Any, **form: Any
) -> Response:
    """Run one desk flow; on a refusal, the ticket page again with the form kept."""
    try:
        action(runtime.unit_of_work)
    except DomainError as failure:
        if failure.error is ErrorCode.NOT_FOUND and failure.field is None:
            return page(request, runtime, actor, "not_found.html", 404)
        return _ticket_page(request, runtime, actor, ticket_id, failure, **form)
    return redirect(f"/console/support/{ticket_id}?done={done}#{'links' if done.startswith('link') else 'latest'}")


@router.post("/console/support/{ticket_id}/reply")
def reply(
    ticket_id: int, request: Request, runtime: RuntimeDep, actor: Desk, body: Body = "", csrf_token: Token = ""
) -> Response:
    check_csrf(request, runtime, csrf_token)
    return _act(
        request,
        runtime,
        actor,
        ticket_id,
        "ticket_replied",
        lambda tx: support_desk.reply_to(tx, actor, ticket_id, body),
        reply_body=body,
    )


@router.post("/console/support/{ticket_id}/note")
def note(
    ticket_id: int, request: Request, runtime: RuntimeDep, actor: Desk, body: Body = "", csrf_token: Token = ""
) -> Response:
    check_csrf(request, runtime, csrf_token)
    return _act(
        request,
        runtime,
        actor,
        ticket_id,
        "ticket_noted",
        lambda tx: support_desk.add_note(tx, actor, ticket_id, body),
        note_body=body,
    )


@router.post("/console/support/{ticket_id}/assign")
def assign(
    ticket_id: int,
    request: Request,
    runtime: RuntimeDep,
    actor: Desk,
    assignee: Annotated[str, Form(max_length=30)] = "",
    csrf_token: Token = "",
) -> Response:
    """`assignee`: "me", a staff member's id, or empty for nobody."""
    check_csrf(request, runtime, csrf_token)
    if assignee == "me":
        chosen: int | None = actor.id
    elif assignee.isdigit() and len(assignee) < 19:
        chosen = int(assignee)
    elif not assignee:
        chosen = None
    else:
        return _ticket_page(
            request, runtime, actor, ticket_id, DomainError(ErrorCode.ASSIGNEE_INVALID, field="assignee_id")
        )
    return _act(
        request,
        runtime,
        actor,
        ticket_id,
        "ticket_assigned",
        lambda tx: support_desk.assign_to(tx, actor, ticket_id, chosen),
    )


@router.post("/console/support/{ticket_id}/close")
def close(
    ticket_id: int,
    request: Request,
    runtime: RuntimeDep,
    actor: Desk,
    reason: Annotated[str, Form(max_length=30)] = "",
    text: Annotated[str, Form(max_length=support_desk.NOTE_TEXT_MAX + 100)] = "",
    csrf_token: Token = "",
) -> Response:
    check_csrf(request, runtime, csrf_token)
    return _act(
        request,
        runtime,
        actor,
        ticket_id,
        "ticket_closed",
        lambda tx: support_desk.close_ticket(tx, actor, ticket_id, reason, text),
        close_reason=reason,
        close_text=text,
    )


@router.post("/console/support/{ticket_id}/links")
def add_link(
    ticket_id: int,
    request: Request,
    runtime: RuntimeDep,
    actor: Desk,
    target: Annotated[str, Form(max_length=10)] = "",
    target_id: Annotated[str, Form(max_length=30)] = "",
    csrf_token: Token = "",
) -> Response:
    check_csrf(request, runtime, csrf_token)
    cleaned = target_id.strip().lstrip("#")
    number = int(cleaned) if cleaned.isdigit() and len(cleaned) < 19 else 0
    return _act(
        request,
        runtime,
        actor,
        ticket_id,
        "link_added",
        lambda tx: support_desk.add_link(tx, actor, ticket_id, target, number),
        link_target=target,
        link_target_id=target_id,
    )


@router.post("/console/support/{ticket_id}/links/{link_id}/remove")
def remove_link(
    ticket_id: int, link_id: int, request: Request, runtime: RuntimeDep, actor: Desk, csrf_token: Token = ""
) -> Response:
    check_csrf(request, runtime, csrf_token)
    return _act(
        request,
        runtime,
        actor,
        ticket_id,
        "link_removed",
        lambda tx: support_desk.remove_link(tx, actor, ticket_id, link_id),
    )
