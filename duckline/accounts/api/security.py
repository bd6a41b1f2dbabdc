"""The account holder's security: prove it is you (password or a code to the current phone)
before changing phone, email or password; change the password; see and end sessions and tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, Field, model_validator

from duckline.accounts import security
from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.web.deps import RuntimeDep, Subscriber, client_address, request_credential
from duckline.web.fields import PathId
from duckline.web.openapi import errors

router = APIRouter(prefix="/me", tags=["account"])


class ProofIn(BaseModel):
    """Exactly one: the account's password, or the code texted by POST /me/reauthenticate/code."""

    password: str | None = Field(default=None, min_length=1, max_length=200)
    code: Annotated[str | None, Field(default=None, pattern=r"^\d{6}$")]

    @model_validator(mode="after")
    def _one(self) -> ProofIn:
        if (self.password is None) == (self.code is None):
            raise ValueError("give either password or code")
        return self


class ProofOut(BaseModel):
    valid_until: datetime


class PasswordChangeIn(BaseModel):
    """Without `current_password`, this session needs a fresh proof (POST /me/reauthenticate)."""

    new_password: str = Field(min_length=1, max_length=200)
    current_password: str | None = Field(default=None, min_length=1, max_length=200)


class PasswordChangedOut(BaseModel):
    sessions_revoked: int


class SessionOut(BaseModel):
    id: int
    name: str
    kind: str  # "browser" (a signed-in web session) or "api" (a bearer token)
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    user_agent: str | None
    current: bool

    @classmethod
    def of(cls, found: security.SignedInSession) -> SessionOut:
        return cls(
            id=found.id,
            name=found.name,
            kind="browser" if found.browser else "api",
            created_at=found.created_at,
            last_used_at=found.last_used_at,
            expires_at=found.expires_at,
            user_agent=found.user_agent,
            current=found.current,
        )


class RevokedOut(BaseModel):
    revoked: int


def current_token(request: Request, runtime: Runtime) -> str:
    found = request_credential(request, runtime)
    if found is None:  # the caller dependency has already let a signed-in caller through
        raise DomainError(ErrorCode.AUTH_REQUIRED)
    return found[0]


def limit(request: Request, runtime: Runtime, rule: str, account_id: int) -> None:
    """Proofs are guesses an attacker holding a session would make: counted per address and account."""
    if not runtime.rate_limits.hit(rule, f"ip:{client_address(request)}", f"account:{account_id}"):
        raise DomainError(ErrorCode.RATE_LIMITED)


def prove(request: Request, runtime: Runtime, account: Account, password: str | None, code: str | None) -> datetime:
    """Check a proof given with a request and record it on the caller's session."""
    token = current_token(request, runtime)
    if password is not None:
        limit(request, runtime, "login", account.id)
        return security.prove_with_password(runtime, account, token, password)
    limit(request, runtime, "otp", account.id)
    return security.prove_code(runtime.unit_of_work, account, token, code or "")


@router.post("/reauthenticate/code", status_code=status.HTTP_202_ACCEPTED, responses=errors(429))
def send_proof_code(request: Request, runtime: RuntimeDep, account: Subscriber) -> dict[str, str]:
    """Text a code to the account's current number, to prove it is you with."""
    limit(request, runtime, "otp", account.id)
    security.send_proof_code(runtime.unit_of_work, account)
    return {"status": "code_sent"}


@router.post("/reauthenticate", response_model=ProofOut, responses=errors(429))
def reauthenticate(body: ProofIn, request: Request, runtime: RuntimeDep, account: Subscriber) -> ProofOut:
    """Prove it is you, with the password or the code; for a few minutes this session (or token)
    may then change the phone, the email or the password."""
    return ProofOut(valid_until=prove(request, runtime, account, body.password, body.code))


@router.post("/password", response_model=PasswordChangedOut, responses=errors(403, 429))
def change_password(
    body: PasswordChangeIn, request: Request, runtime: RuntimeDep, account: Subscriber
) -> PasswordChangedOut:
    """Change the password. Every other session and token is signed out; this one goes on."""
    if body.current_password is not None:
        limit(request, runtime, "login", account.id)
    token = current_token(request, runtime)
    revoked = security.change_password(runtime, account, token, body.new_password, body.current_password)
    return PasswordChangedOut(sessions_revoked=revoked)


@router.get("/sessions", response_model=list[SessionOut])
def sessions(request: Request, runtime: RuntimeDep, account: Subscriber) -> list[SessionOut]:
    """The sessions and tokens signed in to the account, the one asking first (`current`)."""
    return [
        SessionOut.of(s) for s in security.sessions_of(runtime.unit_of_work, account, current_token(request, runtime))
    ]


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
def revoke_session(session_id: PathId, runtime: RuntimeDep, account: Subscriber) -> None:
    """Sign one session or token out, at once."""
    security.end_session(runtime.unit_of_work, account, session_id)


@router.post("/sessions/revoke-others", response_model=RevokedOut)
def revoke_other_sessions(request: Request, runtime: RuntimeDep, account: Subscriber) -> RevokedOut:
    """Sign out every other session and token; the one asking goes on."""
    return RevokedOut(
        revoked=security.end_other_sessions(runtime.unit_of_work, account, current_token(request, runtime))
    )
