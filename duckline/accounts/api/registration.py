"""Sign-up: identity and phone, then the SMS code, then the first line."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile, status

from duckline.accounts import registration
from duckline.accounts import service as accounts
from duckline.accounts.schemas import AccountOut, PhoneIn, RegistrationOut, VerifiedOut, VerifyIn
from duckline.core.errors import DomainError, ErrorCode
from duckline.lines.schemas import EsimOut, LineOut
from duckline.web.deps import PUBLIC, RuntimeDep, checking_code, request_language, sending_code
from duckline.web.openapi import errors

router = APIRouter(prefix="/registrations", tags=["registration"], dependencies=[PUBLIC])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RegistrationOut, responses=errors(409, 429))
def register(
    request: Request,
    runtime: RuntimeDep,
    phone: Annotated[str, Form(max_length=30)],
    password: Annotated[str, Form(min_length=1, max_length=200)],
    document_type: Annotated[str, Form(max_length=30)],
    document_number: Annotated[str, Form(max_length=40)],
    birth_date: Annotated[date, Form()],
    document_image: Annotated[UploadFile, File(description="JPEG, PNG or PDF of the identity document")],
    name_en: Annotated[str | None, Form(max_length=100)] = None,
    name_zh: Annotated[str | None, Form(max_length=30)] = None,
    email: Annotated[str | None, Form(max_length=254)] = None,
    preferred_language: Annotated[str | None, Form(max_length=20)] = None,
    guardian_document_type: Annotated[str | None, Form(max_length=30)] = None,
    guardian_document_number: Annotated[str | None, Form(max_length=40)] = None,
    guardian_name_en: Annotated[str | None, Form(max_length=100)] = None,
    guardian_name_zh: Annotated[str | None, Form(max_length=30)] = None,
    guardian_birth_date: Annotated[date | None, Form()] = None,
) -> RegistrationOut:
    """Register with a mobile number and a real-name identity. A 6-digit code is sent by SMS.

    A number or an identity document that already has an account gets this same answer (no
    account is made, no code is sent, and that account's owner is told by SMS and email), so the
    answer never says who is a customer.

    A request refused for its input counts against no limit: only a registration that is accepted
    counts against the client address's ceiling on codes, and only a code sent counts against the
    number's quota (one a minute, 5 an hour, 10 a day). A 429 says when to try again (Retry-After)."""
    guardian = None
    if guardian_document_type or guardian_document_number:
        if not (guardian_document_type and guardian_document_number and guardian_birth_date):
            raise DomainError(
                ErrorCode.GUARDIAN_REQUIRED, field="guardian", age=runtime.settings.min_age_without_guardian
            )
        guardian = accounts.IdentityInput(
            guardian_document_type, guardian_document_number, guardian_name_en, guardian_name_zh, guardian_birth_date
        )
    image = document_image.file.read(runtime.settings.document_max_bytes + 1)
    form = accounts.Registration(
        phone=phone,
        password=password,
        identity=accounts.IdentityInput(document_type, document_number, name_en, name_zh, birth_date),
        document_image=image,
        language=preferred_language or request_language(request),
        email=email or None,
        guardian=guardian,
    )
    with sending_code(request, runtime):
        return RegistrationOut(phone=registration.start(runtime.unit_of_work, form))


@router.post("/verify", response_model=VerifiedOut, responses=errors(409, 429, 503))
def verify(body: VerifyIn, request: Request, runtime: RuntimeDep) -> VerifiedOut:
    """Check the SMS code; on success the account is active and gets its first line and eSIM."""
    checking_code(request, runtime)
    done = registration.verify(runtime.unit_of_work, body.phone, body.code)
    return VerifiedOut(
        account=AccountOut.of(done.account), line=LineOut.of(done.line), esim=EsimOut.of(done.line, done.esim)
    )


@router.post("/resend", status_code=status.HTTP_202_ACCEPTED, responses=errors(409, 429))
def resend(body: PhoneIn, request: Request, runtime: RuntimeDep) -> dict[str, str]:
    """A new code for a registration waiting for one; any other number gets the same answer."""
    with sending_code(request, runtime):
        registration.resend(runtime.unit_of_work, body.phone)
    return {"status": "sent"}
