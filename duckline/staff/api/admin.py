"""Operator staff: the number pool, identity reviews, the audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from duckline.accounts import identity_review
from duckline.accounts.identity import KycStatus
from duckline.accounts.models import Account
from duckline.accounts.roles import KYC_REVIEWERS, NUMBER_POOL_MANAGERS, Role
from duckline.accounts.schemas import KycIn, PersonOut
from duckline.catalog.api import Language
from duckline.lines import numbers
from duckline.lines.schemas import NumbersIn, NumbersOut
from duckline.staff import audit, audit_texts
from duckline.staff.schemas import AuditOut
from duckline.web.deps import RuntimeDep, require_roles
from duckline.web.edge import BULK
from duckline.web.fields import Cursor, PathId
from duckline.web.openapi import errors
from duckline.web.schemas import Page

router = APIRouter(tags=["staff"])
PoolManager = Annotated[Account, Depends(require_roles(NUMBER_POOL_MANAGERS))]
Reviewer = Annotated[Account, Depends(require_roles(KYC_REVIEWERS))]
Admin = Annotated[Account, Depends(require_roles({Role.ADMIN}))]


@router.post("/numbers/import", response_model=NumbersOut, openapi_extra=BULK)
def import_numbers(body: NumbersIn, runtime: RuntimeDep, actor: PoolManager) -> NumbersOut:
    """Load numbers into the pool (E.164 or national form); an invalid one rejects the whole list."""
    result = numbers.import_into_pool(runtime.unit_of_work, actor, body.numbers)
    return NumbersOut(added=result.added, already_present=result.already_present)


@router.get("/numbers/summary")
def pool_summary(runtime: RuntimeDep, actor: PoolManager) -> dict[str, int]:
    return numbers.pool(runtime.unit_of_work)


@router.get("/persons/{person_id}", response_model=PersonOut)
def get_person(person_id: PathId, runtime: RuntimeDep, actor: Reviewer) -> PersonOut:
    """An identity record; the document number is only ever shown masked."""
    return PersonOut.of(identity_review.person_record(runtime.unit_of_work, actor, person_id))


@router.get(
    "/persons/{person_id}/document",
    response_class=Response,
    responses={**errors(404), 200: {"content": {"image/jpeg": {}, "image/png": {}, "application/pdf": {}}}},
)
def identity_document(person_id: PathId, runtime: RuntimeDep, actor: Reviewer) -> Response:
    """The scan of the identity document under review, decrypted for this answer only, never
    cached; identity reviewers only, and every view is in the audit log. Images are shown inline,
    a PDF is downloaded."""
    scan = identity_review.document_scan(runtime.unit_of_work, actor, person_id)
    disposition = "attachment" if scan.content_type == "application/pdf" else "inline"
    return Response(
        scan.content,
        media_type=scan.content_type,
        headers={
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'{disposition}; filename="{scan.filename}"',
        },
    )


@router.post("/persons/{person_id}/kyc", response_model=PersonOut, responses=errors(409))
def review_identity(person_id: PathId, body: KycIn, runtime: RuntimeDep, actor: Reviewer) -> PersonOut:
    """Accept or reject a real-name registration; a rejection needs a reason the subscriber sees."""
    reviewed = identity_review.review(runtime.unit_of_work, actor, person_id, KycStatus(body.status), body.reason)
    return PersonOut.of(reviewed)


@router.get("/audit", response_model=Page[AuditOut])
def audit_log(
    runtime: RuntimeDep,
    actor: Admin,
    lang: Language,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    who: Annotated[str, Query(max_length=100, description="An account id or a phone number.")] = "",
    subject: Annotated[
        str, Query(max_length=100, description='A target as the log names it ("account:12"), or a phone number.')
    ] = "",
    action: Annotated[str, Query(max_length=60, description='One action, e.g. "account.phone_changed".')] = "",
    since: Annotated[datetime | None, Query(description="From this moment, inclusive (UTC without an offset).")] = None,
    until: Annotated[datetime | None, Query(description="Before this moment; without an offset, UTC.")] = None,
) -> Page[AuditOut]:
    """The audit log, newest first, filtered by who acted, what was acted on, the action and a
    time window. Changes carry `old` and `new`; money is minor units with its currency."""
    filters = audit.Filters(actor=who, subject=subject, action=action, since=_utc(since), until=_utc(until))
    found = audit.log_page(runtime.unit_of_work, actor, filters, cursor, limit)
    reader = audit_texts.Reader(lang, actor.timezone, found.subjects)
    return Page[AuditOut](
        items=[
            AuditOut(
                id=r.id,
                actor_id=r.actor_id,
                action=r.action,
                target=r.target,
                detail=r.detail,
                at=r.at,
                text=reader.describe(r.action, r.target, r.detail or {}).text,
            )
            for r in found.entries
        ],
        next_cursor=found.next_cursor,
    )


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
