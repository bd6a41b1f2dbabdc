"""Forgotten password: a code by SMS to the account's phone, then the code and a new password."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field

from duckline.accounts import service as accounts
from duckline.accounts.schemas import PhoneIn
from duckline.web.deps import PUBLIC, RuntimeDep, checking_code, sending_code
from duckline.web.openapi import errors

router = APIRouter(prefix="/auth/password-reset", tags=["auth"], dependencies=[PUBLIC])


class PasswordResetIn(BaseModel):
    phone: str = Field(max_length=30)
    code: str = Field(min_length=6, max_length=6, pattern=r"^\d{6}$")
    new_password: str = Field(min_length=1, max_length=200)


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=errors(429))
def request_reset(body: PhoneIn, request: Request, runtime: RuntimeDep) -> dict[str, str]:
    """Text a 6-digit code to the number if an account uses it. The answer is the same whether
    or not one does."""
    with sending_code(request, runtime):
        accounts.send_password_reset(runtime.unit_of_work, body.phone)
    return {"status": "sent"}


@router.post("/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=errors(429))
def confirm_reset(body: PasswordResetIn, request: Request, runtime: RuntimeDep) -> None:
    """Set the new password with the code. Every session and token of the account is revoked."""
    checking_code(request, runtime)
    accounts.finish_password_reset(runtime.unit_of_work, body.phone, body.code, body.new_password)
