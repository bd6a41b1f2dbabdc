"""The caller's own account, and the demo SMS outbox."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from sqlalchemy import select

from duckline.adapters.db.tables import Notification, Person
from duckline.errors import DomainError, ErrorCode
from duckline.services import accounts
from duckline.web.deps import CurrentAccount, RuntimeDep
from duckline.web.openapi import errors
from duckline.web.schemas import AccountOut, PersonOut

router = APIRouter(tags=["account"])


@router.get("/me", response_model=AccountOut)
def me(account: CurrentAccount) -> AccountOut:
    return AccountOut.of(account)


@router.get("/me/identity", response_model=PersonOut, responses=errors(404))
def my_identity(account: CurrentAccount, runtime: RuntimeDep) -> PersonOut:
    """The caller's real-name record and its review status (rejected: with the reason)."""
    with runtime.unit_of_work() as uow:
        person = uow.session.get(Person, account.person_id) if account.person_id else None
        if person is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        return PersonOut.of(person)


@router.put("/me/identity", response_model=PersonOut, responses=errors(404, 409))
def resubmit_identity(
    account: CurrentAccount,
    runtime: RuntimeDep,
    document_type: Annotated[str, Form(max_length=30)],
    document_number: Annotated[str, Form(max_length=40)],
    birth_date: Annotated[date, Form()],
    document_image: Annotated[UploadFile, File(description="JPEG, PNG or PDF of the identity document")],
    name_en: Annotated[str | None, Form(max_length=100)] = None,
    name_zh: Annotated[str | None, Form(max_length=30)] = None,
) -> PersonOut:
    """Send corrected identity details and a new scan after a rejection; the line stays unusable
    until the identity is verified."""
    image = document_image.file.read(runtime.settings.document_max_bytes + 1)
    given = accounts.IdentityInput(document_type, document_number, name_en, name_zh, birth_date)
    with runtime.unit_of_work() as uow:
        return PersonOut.of(accounts.resubmit_identity(uow, account, given, image))


@router.get("/demo/outbox", tags=["demo"], responses=errors(404))
def demo_outbox(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[dict[str, str]]:
    """Demo only (development mode): the SMS the log channel 'sent', newest first, to read OTPs."""
    if runtime.settings.environment != "development":
        raise DomainError(ErrorCode.NOT_FOUND)
    with runtime.unit_of_work() as uow:
        rows = uow.session.scalars(select(Notification).order_by(Notification.id.desc()).limit(limit)).all()
        return [{"to": r.recipient, "body": r.body, "status": r.status, "at": r.created_at.isoformat()} for r in rows]
