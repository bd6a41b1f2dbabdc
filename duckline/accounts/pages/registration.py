"""Signing up and getting back in: registration and phone verification (which end signed in, on
the new line's page) and the password reset.

Each page calls the same services as the API (registration.py, service.py) and holds no rule of
its own; every word comes from the templates, through gettext.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from duckline.accounts import registration
from duckline.accounts import service as accounts
from duckline.accounts.identity import DocumentType
from duckline.accounts.models import Account
from duckline.core.errors import DomainError, ErrorCode
from duckline.runtime import Runtime
from duckline.web.deps import PUBLIC, SESSION_COOKIE, RuntimeDep, checking_code, sending_code, session_signer
from duckline.web.errors import STATUS
from duckline.web.portal.rendering import check_csrf, error_text, page_language, redirect, render
from duckline.web.portal.session import Viewer

router = APIRouter(include_in_schema=False)

DOCUMENT_TYPES = tuple(t.value for t in DocumentType)
REGISTRATION_FIELDS = (
    "phone",
    "document_type",
    "document_number",
    "name_en",
    "name_zh",
    "birth_date",
    "guardian_document_type",
    "guardian_document_number",
    "guardian_name_en",
    "guardian_name_zh",
    "guardian_birth_date",
)
# Fields an error can point at on each form (others are shown at the top of the page).
REGISTRATION_ERROR_FIELDS = {*REGISTRATION_FIELDS, "password", "document_image", "guardian"}
CODE_ERROR_FIELDS = {"phone", "code", "password"}
_SIX_DIGITS = re.compile(r"^\d{6}$")


# --- Sessions ---------------------------------------------------------------------------------


def signed_in_redirect(runtime: Runtime, token: str, target: str) -> Response:
    """Redirect to `target` carrying the signed session cookie for `token`."""
    settings = runtime.settings
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        session_signer(runtime).sign(token).decode(),
        max_age=settings.session_max_age_seconds,
        httponly=True,
        secure=settings.environment == "production",
        samesite="lax",
        path="/",
    )
    return response


def _errors(language: str, error: DomainError, fields: set[str]) -> dict[str, str]:
    """{form field: message}; "" holds an error that belongs to no field on the form."""
    field = (error.field or "").replace(".", "_")
    return {field if field in fields else "": error_text(language, error)}


def _refused(response: Response, error: DomainError) -> Response:
    """The page that answers a refusal; one that passes with time (429) says when (Retry-After)."""
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


# --- Registration -----------------------------------------------------------------------------


@router.get("/register")
def register_page(request: Request, runtime: RuntimeDep, account: Viewer) -> Response:
    if account is not None:
        return redirect("/")
    return _register_form(request, runtime, {}, {})


def _register_form(
    request: Request, runtime: RuntimeDep, form: dict[str, str], errors: dict[str, str], status_code: int = 200
) -> Response:
    return render(
        request,
        runtime,
        "portal/register.html",
        None,
        status_code=status_code,
        form=form,
        errors=errors,
        document_types=DOCUMENT_TYPES,
        guardian_age=runtime.settings.min_age_without_guardian,
        max_mb=runtime.settings.document_max_bytes // (1024 * 1024),
        min_password=accounts.MIN_PASSWORD_LENGTH,
        today=runtime.clock.now().astimezone(ZoneInfo(runtime.settings.display_timezone)).date().isoformat(),
    )


@router.post("/register", dependencies=[PUBLIC])
def register(
    request: Request,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
    phone: Annotated[str, Form(max_length=30)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    document_type: Annotated[str, Form(max_length=30)] = "",
    document_number: Annotated[str, Form(max_length=40)] = "",
    name_en: Annotated[str, Form(max_length=100)] = "",
    name_zh: Annotated[str, Form(max_length=30)] = "",
    birth_date: Annotated[str, Form(max_length=10)] = "",
    document_image: Annotated[UploadFile | None, File()] = None,
    guardian_document_type: Annotated[str, Form(max_length=30)] = "",
    guardian_document_number: Annotated[str, Form(max_length=40)] = "",
    guardian_name_en: Annotated[str, Form(max_length=100)] = "",
    guardian_name_zh: Annotated[str, Form(max_length=30)] = "",
    guardian_birth_date: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """As POST /api/v1/registrations; the errors come back next to their fields."""
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, None)
    typed = {
        "phone": phone,
        "document_type": document_type,
        "document_number": document_number,
        "name_en": name_en,
        "name_zh": name_zh,
        "birth_date": birth_date,
        "guardian_document_type": guardian_document_type,
        "guardian_document_number": guardian_document_number,
        "guardian_name_en": guardian_name_en,
        "guardian_name_zh": guardian_name_zh,
        "guardian_birth_date": guardian_birth_date,
    }
    try:
        guardian = None
        if guardian_document_type or guardian_document_number:
            if not (guardian_document_type and guardian_document_number and guardian_birth_date):
                raise DomainError(
                    ErrorCode.GUARDIAN_REQUIRED, field="guardian", age=runtime.settings.min_age_without_guardian
                )
            guardian = accounts.IdentityInput(
                guardian_document_type,
                guardian_document_number,
                guardian_name_en or None,
                guardian_name_zh or None,
                _parse_date(guardian_birth_date),
            )
        image = document_image.file.read(runtime.settings.document_max_bytes + 1) if document_image else b""
        form = accounts.Registration(
            phone=phone,
            password=password,
            identity=accounts.IdentityInput(
                document_type, document_number, name_en or None, name_zh or None, _parse_date(birth_date)
            ),
            document_image=image,
            language=language,
            guardian=guardian,
        )
        with sending_code(request, runtime):
            registered_phone = registration.start(runtime.unit_of_work, form)
    except DomainError as error:
        errors = _errors(language, error, REGISTRATION_ERROR_FIELDS)
        return _refused(_register_form(request, runtime, typed, errors, status_code=STATUS[error.error.kind]), error)
    # A taken number or identity lands here too: the page must not tell who is a customer.
    return redirect("/register/verify?" + urlencode({"phone": registered_phone}))


def _parse_date(text: str) -> date:
    """A date from an <input type=date>. One that cannot be read goes to the service as a date in
    the future, which it refuses (BIRTH_DATE_INVALID on that field) in its usual order, so the
    errors come in the same order as the form's fields."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return date.max


@router.get("/register/verify", dependencies=[PUBLIC])
def verify_page(request: Request, runtime: RuntimeDep, phone: str = "") -> Response:
    return _verify_form(request, runtime, phone[:30], {})


def _verify_form(
    request: Request, runtime: RuntimeDep, phone: str, errors: dict[str, str], status_code: int = 200, **extra: object
) -> Response:
    return render(
        request,
        runtime,
        "portal/register_verify.html",
        None,
        status_code=status_code,
        phone=phone,
        errors=errors,
        minutes=runtime.settings.otp_ttl_seconds // 60,
        **extra,
    )


@router.post("/register/verify", dependencies=[PUBLIC])
def verify(
    request: Request,
    runtime: RuntimeDep,
    csrf_token: Annotated[str, Form()] = "",
    phone: Annotated[str, Form(max_length=30)] = "",
    code: Annotated[str, Form(max_length=20)] = "",
    action: Annotated[str, Form(max_length=10)] = "verify",
) -> Response:
    """As POST /api/v1/registrations/verify (or /resend): the code opens the first line, and
    the new subscriber is signed in on the line's page."""
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, None)
    if action == "resend":
        try:
            with sending_code(request, runtime):
                registration.resend(runtime.unit_of_work, phone)
        except DomainError as error:
            errors = _errors(language, error, CODE_ERROR_FIELDS)
            return _refused(_verify_form(request, runtime, phone, errors, STATUS[error.error.kind]), error)
        return _verify_form(request, runtime, phone, {}, sent=True)
    try:
        checking_code(request, runtime)
        if not _SIX_DIGITS.match(code.strip()):
            raise DomainError(ErrorCode.OTP_INVALID, field="code")
        session_length = timedelta(seconds=runtime.settings.session_max_age_seconds)
        verified = registration.verify(runtime.unit_of_work, phone, code.strip(), portal_session=session_length)
    except DomainError as error:
        errors = _errors(language, error, CODE_ERROR_FIELDS)
        return _refused(_verify_form(request, runtime, phone, errors, STATUS[error.error.kind]), error)
    assert verified.session_token is not None
    return signed_in_redirect(runtime, verified.session_token, f"/lines/{verified.line.id}")


# --- Password reset ---------------------------------------------------------------------------


@router.get("/password-reset")
def password_reset_page(request: Request, runtime: RuntimeDep, account: Viewer) -> Response:
    return _reset_form(request, runtime, account, "request", "", {})


def _reset_form(
    request: Request,
    runtime: RuntimeDep,
    account: Account | None,
    step: str,
    phone: str,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        runtime,
        "portal/password_reset.html",
        account,
        status_code=status_code,
        step=step,
        phone=phone,
        errors=errors,
        min_password=accounts.MIN_PASSWORD_LENGTH,
        minutes=runtime.settings.otp_ttl_seconds // 60,
    )


@router.post("/password-reset")
def password_reset(
    request: Request,
    runtime: RuntimeDep,
    account: Viewer,
    csrf_token: Annotated[str, Form()] = "",
    step: Annotated[str, Form(max_length=10)] = "request",
    phone: Annotated[str, Form(max_length=30)] = "",
    code: Annotated[str, Form(max_length=20)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    action: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Step "request" (or the confirm step's resend button) as POST /api/v1/auth/password-reset,
    step "confirm" as …/password-reset/confirm."""
    check_csrf(request, runtime, csrf_token)
    language = page_language(request, account)
    if step != "confirm" or action == "resend":
        try:
            with sending_code(request, runtime):
                accounts.send_password_reset(runtime.unit_of_work, phone)
        except DomainError as error:
            errors = _errors(language, error, CODE_ERROR_FIELDS)
            refused = _reset_form(request, runtime, account, "request", phone, errors, STATUS[error.error.kind])
            return _refused(refused, error)
        return _reset_form(request, runtime, account, "confirm", phone, {})
    try:
        checking_code(request, runtime)
        if not _SIX_DIGITS.match(code.strip()):
            raise DomainError(ErrorCode.OTP_INVALID, field="code")
        accounts.finish_password_reset(runtime.unit_of_work, phone, code.strip(), password)
    except DomainError as error:
        errors = _errors(language, error, CODE_ERROR_FIELDS)
        refused = _reset_form(request, runtime, account, "confirm", phone, errors, STATUS[error.error.kind])
        return _refused(refused, error)
    # Every session of the account was revoked, this browser's too.
    response = _reset_form(request, runtime, None, "done", phone, {})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


__all__ = ["router", "signed_in_redirect"]
