"""Console: the audit log, each entry a sentence in the reader's language with its values formatted
and its subjects linked to their console pages; filtered by who acted, what was acted on, the action
and the days (in the reader's time zone), newest first, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from duckline.accounts.models import Account
from duckline.core import i18n
from duckline.core.errors import DomainError
from duckline.runtime import Runtime
from duckline.staff import audit, audit_texts
from duckline.staff.console_common import Admin, FormProblem, page, status_for
from duckline.staff.models import AuditEntry
from duckline.web.deps import RuntimeDep
from duckline.web.portal.rendering import page_language

router = APIRouter(include_in_schema=False)
AUDIT_PAGE = 50


def subject_href(subject: audit.Subject) -> str | None:
    """The console page that shows a subject of the log, where there is one."""
    kind, key, owner = subject.kind, subject.key, subject.account_id
    subscriber = f"/console/subscribers/{owner}" if owner is not None else None
    if kind == "ticket":
        return f"/console/support/{key}"
    if subscriber is not None:
        anchors = {
            "account": "",
            "person": "#identity",
            "line": "#lines-heading",
            "order": f"#order-{key}",
            "payment": "#orders-heading",
        }
        if kind in anchors:
            return subscriber + anchors[kind]
    return {
        "plan": f"/console/plans/{key}/edit",
        "promotion": f"/console/promotions#promotion-{key}",
        "pool": "/console/numbers",
        "job": "/console/reconciliation",
    }.get(kind)


def _linked(value: audit_texts.Value, links: dict[str, str | None]) -> Markup:
    href = links.get(value.ref) if value.ref else None
    return Markup('<a href="{}">{}</a>').format(href, value.text) if href else escape(value.text)


@dataclass(frozen=True)
class Row:
    entry: AuditEntry
    who: Markup | None  # None: the system
    sentence: Markup
    described: audit_texts.Described
    links: dict[str, str | None]

    def value(self, value: audit_texts.Value) -> Markup:
        return _linked(value, self.links)


def _days(text: str, field: str) -> date | None:
    if not text.strip():
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise FormProblem("day", field) from exc
    if not audit.FIRST_YEAR <= day.year <= audit.LAST_YEAR:
        raise FormProblem("day", field)
    return day


def _rows(
    runtime: Runtime, actor: Account, language: str, filters: audit.Filters, cursor: str | None
) -> tuple[list[Row], str | None]:
    found = audit.log_page(runtime.unit_of_work, actor, filters, cursor, AUDIT_PAGE, console=True)
    entries, next_cursor, subjects, phones = found.entries, found.next_cursor, found.subjects, found.phones
    reader = audit_texts.Reader(language, actor.timezone, subjects)
    links = {target: subject_href(subject) for target, subject in subjects.items()}
    rows: list[Row] = []
    for e in entries:
        described = reader.describe(e.action, e.target, e.detail or {})
        sentence = escape(described.sentence).format(
            **{name: _linked(value, links) for name, value in described.values.items()}
        )
        who = None
        if e.actor_id:
            shown = audit_texts.Value(
                reader.shown("phone", phones[e.actor_id]).text if e.actor_id in phones else f"#{e.actor_id}",
                f"account:{e.actor_id}",
            )
            who = _linked(shown, links)
        rows.append(Row(e, who, sentence, described, links))
    return rows, next_cursor


def _actions(language: str) -> list[tuple[str, str]]:
    """The actions the filter offers, by their names in the reader's language."""
    names = [(name, i18n.gettext(language, a.label)) for name, a in audit_texts.ACTIONS.items()]
    return sorted(names, key=lambda pair: pair[1])


@router.get("/console/audit")
def audit_log(
    request: Request,
    runtime: RuntimeDep,
    actor: Admin,
    cursor: str | None = None,
    who: str = "",
    subject: str = "",
    action: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    language = page_language(request, actor)
    form = {"who": who[:100], "subject": subject[:100], "action": action[:60], "since": since[:10], "until": until[:10]}
    context: dict[str, Any] = {
        "form": form,
        "actions": _actions(language),
        "timezone": actor.timezone,
        "first_page": not cursor,
    }
    filtered = {k: v for k, v in form.items() if v}
    try:
        tz = ZoneInfo(actor.timezone)
        first, last = _days(since, "since"), _days(until, "until")
        filters = audit.Filters(
            actor=who,
            subject=subject,
            action=action,
            since=datetime.combine(first, time(), tz) if first else None,
            until=datetime.combine(last + timedelta(days=1), time(), tz) if last else None,
        )
        rows, next_cursor = _rows(runtime, actor, language, filters, cursor)
    except (DomainError, FormProblem) as failure:
        field = failure.field if failure.field in audit_texts.PROBLEMS else None
        return page(
            request,
            runtime,
            actor,
            "audit.html",
            status_for(failure),
            failure=None if field else failure,
            failure_text=i18n.gettext(language, audit_texts.PROBLEMS[field]) if field else None,
            error_field=field,
            rows=[],
            next_cursor=None,
            newest=None,
            older=None,
            **context,
        )
    return page(
        request,
        runtime,
        actor,
        "audit.html",
        rows=rows,
        filtered=bool(filtered),
        newest="/console/audit" + (f"?{urlencode(filtered)}" if filtered else ""),
        older=f"/console/audit?{urlencode({**filtered, 'cursor': next_cursor})}" if next_cursor else None,
        **context,
    )
