"""The subscriber's support tickets: the list, opening one, a thread and replying to it.

Every form posts back here with the session's CSRF token; a success redirects to a GET that
shows a notice (?saved=…), a failure shows the same page again with the reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.support import conversations as support
from duckline.web.deps import RuntimeDep
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import check_csrf, error_text, page_language, redirect, render
from duckline.web.portal.session import SignedIn

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=support.BODY_MAX + 100)]
Csrf = Annotated[str, Form()]


@router.get("/support")
def support_page(request: Request, runtime: RuntimeDep, account: SignedIn, cursor: str | None = None) -> Response:
    return _support(request, runtime, account, cursor)


@router.post("/support")
def open_ticket(
    request: Request,
    runtime: RuntimeDep,
    account: SignedIn,
    subject: Annotated[str, Form(max_length=support.SUBJECT_MAX + 50)],
    body: Text,
    topic: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Csrf = "",
) -> Response:
    check_csrf(request, runtime, csrf_token)
    try:
        ticket_id = support.start_ticket(runtime.unit_of_work, account, subject, body, topic or None).id
    except DomainError as error:
        return _support(
            request,
            runtime,
            account,
            None,
            status_code=STATUS[error.error.kind],
            error=error_text(page_language(request, account), error),
            error_field=error.field,
            subject=subject,
            body=body,
            topic=topic,
        )
    return redirect(f"/support/{ticket_id}?saved=opened")


@router.get("/support/{ticket_id}")
def ticket_page(
    ticket_id: int, request: Request, runtime: RuntimeDep, account: SignedIn, saved: str | None = None
) -> Response:
    return _ticket(request, runtime, account, ticket_id, saved=saved)


@router.post("/support/{ticket_id}/messages")
def reply(
    ticket_id: int, request: Request, runtime: RuntimeDep, account: SignedIn, body: Text, csrf_token: Csrf = ""
) -> Response:
    check_csrf(request, runtime, csrf_token)
    try:
        support.answer(runtime.unit_of_work, account, ticket_id, body)
    except DomainError as error:
        if error.error is ErrorCode.NOT_FOUND:
            return _not_found(request, runtime, account)
        return _ticket(
            request,
            runtime,
            account,
            ticket_id,
            status_code=STATUS[error.error.kind],
            error=error_text(page_language(request, account), error),
            error_field=error.field,
            body=body,
        )
    return redirect(f"/support/{ticket_id}?saved=sent")


def _support(
    request: Request, runtime: Runtime, account: Account, cursor: str | None, status_code: int = 200, **context: Any
) -> Response:
    found = support.ticket_list(runtime.unit_of_work, account, cursor, 20)
    return render(
        request,
        runtime,
        "portal/support.html",
        account,
        status_code=status_code,
        tickets=found.tickets,
        latest=found.latest,
        next_cursor=found.next_cursor,
        **context,
    )


def _ticket(
    request: Request, runtime: Runtime, account: Account, ticket_id: int, status_code: int = 200, **context: Any
) -> Response:
    try:
        shown = support.thread(runtime.unit_of_work, account, ticket_id)
    except DomainError:
        return _not_found(request, runtime, account)
    return render(
        request,
        runtime,
        "portal/ticket.html",
        account,
        status_code=status_code,
        ticket=shown.ticket,
        messages=shown.messages,
        **context,
    )


def _not_found(request: Request, runtime: Runtime, account: Account) -> Response:
    return _support(
        request,
        runtime,
        account,
        None,
        status_code=404,
        error=error_text(page_language(request, account), DomainError(ErrorCode.NOT_FOUND)),
    )
