"""The accounts API's request and response bodies (separate from the tables on purpose)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from duckline.accounts.models import Account, Person
from duckline.lines.schemas import EsimOut, LineOut
from duckline.web.fields import Phone


class AccountOut(BaseModel):
    id: int
    phone: str
    phone_verified: bool
    email: str | None
    role: str
    language: str

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            phone=account.phone,
            phone_verified=account.phone_verified_at is not None,
            email=account.email,
            role=account.role.value,
            language=account.language,
        )


class RegistrationOut(BaseModel):
    """The same for every registration that passes the checks, whether or not the number or the
    identity already had an account (then the account's owner is told instead): nobody learns
    from it who is a customer."""

    phone: str = Field(description="where the code was sent (E.164)")
    next_step: str = "verify_phone"


class VerifyIn(BaseModel):
    phone: Phone
    code: str = Field(min_length=6, max_length=6, pattern=r"^\d{6}$")


class PhoneIn(BaseModel):
    phone: Phone


class VerifiedOut(BaseModel):
    account: AccountOut
    line: LineOut
    esim: EsimOut


class LoginIn(BaseModel):
    phone: Phone
    password: str = Field(min_length=1, max_length=200)


class SessionOut(BaseModel):
    account: AccountOut
    csrf_token: str


class TokenIn(LoginIn):
    name: str = Field(default="api client", max_length=100)


class TokenOut(BaseModel):
    token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_at: datetime | None


class KycIn(BaseModel):
    status: str = Field(pattern="^(verified|rejected)$")
    reason: str | None = Field(default=None, max_length=300)


class PersonOut(BaseModel):
    id: int
    document_type: str
    document_number_masked: str
    name_en: str | None
    name_zh: str | None
    birth_date: date
    kyc_status: str
    kyc_reason: str | None

    @classmethod
    def of(cls, person: Person) -> PersonOut:
        return cls(
            id=person.id,
            document_type=person.document_type.value,
            document_number_masked=person.document_masked,
            name_en=person.name_en,
            name_zh=person.name_zh,
            birth_date=person.birth_date,
            kyc_status=person.kyc_status.value,
            kyc_reason=person.kyc_reason,
        )
