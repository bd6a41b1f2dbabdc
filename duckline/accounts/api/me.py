"""The caller's own account, and the demo SMS outbox."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile

from duckline.accounts import service as accounts
from duckline.accounts.schemas import AccountOut, PersonOut
from duckline.core.errors import DomainError, ErrorCode
from duckline.messaging.sms.log import LogSmsChannel
from duckline.web.deps import PUBLIC, CurrentAccount, RuntimeDep, Subscriber
from duckline.web.openapi import errors

router = APIRouter(tags=["account"])


@router.get("/me", response_model=AccountOut)
def me(account: CurrentAccount) -> AccountOut:
    return AccountOut.of(account)


@router.get("/me/identity", response_model=PersonOut, responses=errors(404))
def my_identity(account: Subscriber, runtime: RuntimeDep) -> PersonOut:
    """The caller's real-name record and its review status (rejected: with the reason)."""
    return PersonOut.of(accounts.identity_of(runtime.unit_of_work, account))


@router.put("/me/identity", response_model=PersonOut, responses=errors(404, 409))
def resubmit_identity(
    account: Subscriber,
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
    return PersonOut.of(accounts.correct_identity(runtime.unit_of_work, account, given, image))


@router.get("/demo/outbox", tags=["demo"], dependencies=[PUBLIC], responses=errors(404))
def demo_outbox(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[dict[str, str]]:
    """Demo only (development mode, SMS through the log channel): the SMS it 'sent', newest first,
    to read OTPs — as the subscriber got them; the stored messages keep no codes once sent."""
    if runtime.settings.environment != "development" or not isinstance(runtime.sms, LogSmsChannel):
        raise DomainError(ErrorCode.NOT_FOUND)
    return runtime.sms.recent(limit)
