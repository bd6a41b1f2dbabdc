"""The subscriber's settings: language, message preferences, verified changes of email and phone."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, EmailStr, Field

from duckline.accounts import contacts
from duckline.accounts.api import security as api_security
from duckline.accounts.models import Account
from duckline.accounts.schemas import AccountOut
from duckline.web.deps import RuntimeDep, Subscriber, SubscriberOrStaff, checking_code, sending_code
from duckline.web.openapi import errors

router = APIRouter(prefix="/me", tags=["account"])


class AccountPatch(BaseModel):
    language: str | None = Field(default=None, pattern="^(en|zh_Hant|zh_Hans)$")


class EmailIn(BaseModel):
    email: EmailStr
    password: str | None = Field(
        default=None, min_length=1, max_length=200, description="Proves it is you (or POST /me/reauthenticate first)"
    )


class PhoneChangeIn(BaseModel):
    phone: str = Field(max_length=30)
    password: str | None = Field(
        default=None, min_length=1, max_length=200, description="Proves it is you (or POST /me/reauthenticate first)"
    )


class CodeIn(BaseModel):
    code: Annotated[str, Field(pattern=r"^\d{6}$")]


Preferences = dict[str, dict[str, bool]]


def _proved(request: Request, runtime: RuntimeDep, account: Account, password: str | None) -> str:
    """The caller's session token, after recording the password as its proof when one is given."""
    if password is not None:
        api_security.prove(request, runtime, account, password, None)
    return api_security.current_token(request, runtime)


@router.patch("", response_model=AccountOut)
def update_me(body: AccountPatch, runtime: RuntimeDep, account: SubscriberOrStaff) -> AccountOut:
    return AccountOut.of(contacts.choose_language(runtime.unit_of_work, account, body.language))


@router.get("/preferences", response_model=Preferences)
def preferences(account: Subscriber) -> Preferences:
    """Which message categories each channel gets (security, payment and service are always on)."""
    return contacts.effective_preferences(account)


@router.put("/preferences", response_model=Preferences)
def set_preferences(body: Preferences, runtime: RuntimeDep, account: Subscriber) -> Preferences:
    return contacts.save_preferences(runtime.unit_of_work, account, body)


@router.post("/email", status_code=status.HTTP_202_ACCEPTED, responses=errors(403, 409, 429))
def change_email(body: EmailIn, request: Request, runtime: RuntimeDep, account: Subscriber) -> dict[str, str]:
    """Send a code to the new address; the change happens when it is confirmed. Needs a fresh
    proof that it is you: the `password` here, or POST /me/reauthenticate just before
    (else 403 `reauthentication_required`, and nothing is sent)."""
    token = _proved(request, runtime, account, body.password)
    with sending_code(request, runtime):
        contacts.start_change(runtime.unit_of_work, account, contacts.EMAIL, str(body.email), token)
    return {"status": "code_sent"}


@router.post("/email/verify", response_model=AccountOut, responses=errors(409, 429))
def confirm_email(body: CodeIn, request: Request, runtime: RuntimeDep, account: Subscriber) -> AccountOut:
    checking_code(request, runtime, f"account:{account.id}")
    return AccountOut.of(contacts.finish_change(runtime.unit_of_work, account, contacts.EMAIL, body.code))


@router.post("/phone", status_code=status.HTTP_202_ACCEPTED, responses=errors(403, 409, 429))
def change_phone(body: PhoneChangeIn, request: Request, runtime: RuntimeDep, account: Subscriber) -> dict[str, str]:
    """Send a code by SMS to the new number; the old number is told once the change is confirmed.
    Needs a fresh proof that it is you, as for the email."""
    token = _proved(request, runtime, account, body.password)
    with sending_code(request, runtime):
        contacts.start_change(runtime.unit_of_work, account, contacts.PHONE, body.phone, token)
    return {"status": "code_sent"}


@router.post("/phone/verify", response_model=AccountOut, responses=errors(409, 429))
def confirm_phone(body: CodeIn, request: Request, runtime: RuntimeDep, account: Subscriber) -> AccountOut:
    checking_code(request, runtime, f"account:{account.id}")
    return AccountOut.of(contacts.finish_change(runtime.unit_of_work, account, contacts.PHONE, body.code))
