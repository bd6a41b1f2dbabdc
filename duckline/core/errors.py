"""Every domain failure has a stable machine code, a kind the web layer maps to HTTP once,
and an English message that is also the gettext message id for its translations."""

from __future__ import annotations

from enum import Enum
from typing import Any


class Kind(Enum):
    INVALID = "invalid"  # 422
    BAD_REQUEST = "bad_request"  # 400: the request itself cannot be trusted or read
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409
    UNAUTHENTICATED = "unauthenticated"  # 401
    FORBIDDEN = "forbidden"  # 403
    RATE_LIMITED = "rate_limited"  # 429
    TOO_LARGE = "too_large"  # 413: the request body is over the limit for its kind of route
    UNAVAILABLE = "unavailable"  # 503


class ErrorCode(Enum):
    # (kind, English message; {placeholders} are filled after translation)
    VALIDATION_FAILED = (Kind.INVALID, "The request is not valid.")
    PHONE_INVALID = (Kind.INVALID, "This is not a valid mobile number.")
    PHONE_REGION_NOT_ALLOWED = (
        Kind.INVALID,
        "Only Hong Kong, Mainland China and Macau mobile numbers can register.",
    )
    PHONE_TAKEN = (Kind.CONFLICT, "This phone number is already registered.")
    PASSWORD_TOO_WEAK = (Kind.INVALID, "The password must have at least {min} characters.")
    DOCUMENT_NUMBER_INVALID = (Kind.INVALID, "The identity document number is not valid.")
    DOCUMENT_TYPE_UNKNOWN = (Kind.INVALID, "Unknown identity document type.")
    DOCUMENT_IMAGE_INVALID = (Kind.INVALID, "The document image must be a JPEG, PNG or PDF file.")
    DOCUMENT_IMAGE_TOO_LARGE = (Kind.INVALID, "The document image is larger than {max_mb} MB.")
    NAME_REQUIRED = (Kind.INVALID, "A Chinese or English name is required.")
    BIRTH_DATE_INVALID = (Kind.INVALID, "The date of birth is not valid.")
    GUARDIAN_REQUIRED = (Kind.INVALID, "Subscribers under {age} need a registering adult.")
    GUARDIAN_NOT_ADULT = (Kind.INVALID, "The registering adult must be at least 18 years old.")
    IDENTITY_TAKEN = (
        Kind.CONFLICT,
        "This identity document is already registered. Log in to add another line.",
    )
    LINE_LIMIT_REACHED = (Kind.CONFLICT, "This identity already holds the maximum of {limit} lines.")
    KYC_NOT_VERIFIED = (Kind.CONFLICT, "The identity registration has not been verified yet.")
    KYC_REJECTED = (Kind.CONFLICT, "The identity registration was rejected: {reason}")
    IDENTITY_ALREADY_VERIFIED = (Kind.CONFLICT, "This identity is verified and cannot be changed here.")
    OTP_INVALID = (Kind.INVALID, "The verification code is wrong.")
    OTP_EXPIRED = (Kind.INVALID, "The verification code has expired. Request a new one.")
    OTP_TOO_MANY_ATTEMPTS = (Kind.RATE_LIMITED, "Too many wrong codes. Request a new one.")
    OTP_RESEND_TOO_SOON = (Kind.RATE_LIMITED, "Please wait {seconds} seconds before asking for a new code.")
    OTP_SEND_LIMIT = (
        Kind.RATE_LIMITED,
        "Too many codes have been sent to this number or email address. Try again in {wait}.",
    )
    ACCOUNT_NOT_VERIFIED = (Kind.CONFLICT, "Verify your phone number first.")
    ACCOUNT_ALREADY_VERIFIED = (Kind.CONFLICT, "This phone number is already verified.")
    LOGIN_FAILED = (Kind.UNAUTHENTICATED, "The phone number or password is wrong.")
    LOGIN_LOCKED = (
        Kind.RATE_LIMITED,
        "Too many wrong passwords: sign-in is locked for {minutes} minutes. "
        "Reset the password with an SMS code to unlock it now.",
    )
    RATE_LIMITED = (Kind.RATE_LIMITED, "Too many attempts. Try again in a minute.")
    AUTH_REQUIRED = (Kind.UNAUTHENTICATED, "Log in to continue.")
    CSRF_FAILED = (Kind.FORBIDDEN, "The form has expired. Reload the page and try again.")
    FORBIDDEN = (Kind.FORBIDDEN, "You are not allowed to do this.")
    NOT_FOUND = (Kind.NOT_FOUND, "Not found.")
    NO_NUMBER_AVAILABLE = (Kind.UNAVAILABLE, "No virtual number is available right now. Try again later.")
    NUMBER_INVALID = (Kind.INVALID, "Not a valid number for the pool: {number}")
    LINE_TRANSITION_NOT_ALLOWED = (Kind.CONFLICT, "A line cannot go from {current} to {target}.")
    LINE_NOT_ACTIVE = (Kind.CONFLICT, "The line is not active.")
    PLAN_NOT_FOUND = (Kind.NOT_FOUND, "No such plan.")
    PLAN_CODE_TAKEN = (Kind.CONFLICT, "A plan with this code already exists.")
    PLAN_RETIRED = (Kind.CONFLICT, "This plan is no longer offered.")
    PLAN_INVALID = (Kind.INVALID, "The plan is not valid: {reason}")
    USAGE_BATCH_INVALID = (Kind.INVALID, "The usage batch is not valid.")
    USAGE_BATCH_TOO_LARGE = (Kind.INVALID, "A usage batch holds at most {max} records.")
    USAGE_RECORD_CONFLICT = (
        Kind.CONFLICT,
        "Usage record {record_id} was already received with different content.",
    )
    INVALID_CURSOR = (Kind.INVALID, "The page cursor is not valid.")
    ORDER_TRANSITION_NOT_ALLOWED = (Kind.CONFLICT, "An order cannot go from {current} to {target}.")
    ORDER_NOT_PAYABLE = (Kind.CONFLICT, "This order can no longer be paid.")
    IDEMPOTENCY_KEY_REQUIRED = (Kind.INVALID, "The Idempotency-Key header is required.")
    IDEMPOTENCY_KEY_REUSED = (Kind.CONFLICT, "This Idempotency-Key was already used for a different request.")
    LINE_RECYCLED = (Kind.CONFLICT, "This number has been recycled and can no longer be renewed.")
    LINE_NOT_RENEWABLE = (Kind.CONFLICT, "This line cannot be renewed now.")
    ADDON_NEEDS_ACTIVE_LINE = (Kind.CONFLICT, "Add-on packs can only be bought for an active line.")
    ORDER_BELOW_MINIMUM = (Kind.INVALID, "The minimum for one order is {minimum}.")
    ORDER_ABOVE_MAXIMUM = (Kind.INVALID, "The maximum for one order is {maximum}.")
    MONTHLY_LIMIT_REACHED = (
        Kind.CONFLICT,
        "This line can spend at most {limit} a month; {left} is left this month.",
    )
    PROMO_CODE_INVALID = (Kind.INVALID, "This promo code is not valid.")
    PROMO_CODE_EXPIRED = (Kind.INVALID, "This promo code has expired.")
    PROMO_CODE_NOT_APPLICABLE = (Kind.INVALID, "This promo code does not apply to this plan.")
    PROMO_CODE_FIRST_RENEWAL_ONLY = (Kind.INVALID, "This promo code is only for a line's first purchase.")
    PROMO_CODE_ALREADY_USED = (Kind.CONFLICT, "You have already used this promo code.")
    PROMO_CODE_USED_UP = (Kind.CONFLICT, "This promo code has been used the maximum number of times.")
    PAYMENT_METHOD_UNAVAILABLE = (Kind.INVALID, "This payment method is not available.")
    PAYMENT_PROVIDER_ERROR = (Kind.UNAVAILABLE, "The payment provider did not answer. Please try again.")
    PAYMENT_OUTCOME_PENDING = (
        Kind.CONFLICT,
        "The payment provider has not yet confirmed an earlier payment for this order. "
        "We are checking with it, and you will never be charged twice: try again in a few minutes.",
    )
    WEBHOOK_SIGNATURE_INVALID = (Kind.BAD_REQUEST, "The webhook signature is not valid.")
    REFUND_NOT_ALLOWED = (Kind.CONFLICT, "This order cannot be refunded: {reason}")
    REFUND_AMOUNT_INVALID = (Kind.INVALID, "The refund amount must be between 1 and {max} minor units.")
    REASON_REQUIRED = (Kind.INVALID, "A reason is required.")
    CASE_ALREADY_RESOLVED = (Kind.CONFLICT, "This case has already been resolved.")
    SAVED_METHOD_REQUIRED = (Kind.CONFLICT, "Automatic renewal needs a card saved with an earlier card payment.")
    AUTO_RENEW_NEEDS_CARD = (
        Kind.INVALID,
        "Automatic renewal needs a card: Alipay and WeChat Pay cannot be charged automatically. "
        "Pay by card, or pay without automatic renewal.",
    )
    EMAIL_TAKEN = (Kind.CONFLICT, "This email address is already used by another account.")
    PREFERENCE_ALWAYS_ON = (
        Kind.INVALID,
        "Security, payment and service messages cannot be turned off.",
    )
    PAYLOAD_TOO_LARGE = (Kind.TOO_LARGE, "The request is too large: at most {max_kb} KB can be sent here.")
    WEBHOOK_PAYLOAD_INVALID = (Kind.BAD_REQUEST, "The webhook is signed but its content cannot be read.")
    USAGE_RECORD_OUT_OF_WINDOW = (
        Kind.INVALID,
        "The usage record's start time is outside the accepted window ({earliest} to {latest}).",
    )
    EMAIL_INVALID = (Kind.INVALID, "Enter an email address like name@example.com.")
    DOCUMENT_IMAGE_REQUIRED = (Kind.INVALID, "Attach a photo or scan of your identity document.")
    OTP_ADDRESS_LIMIT = (
        Kind.RATE_LIMITED,
        "Too many codes have been requested from your network. Try again in {wait}.",
    )
    REAUTHENTICATION_REQUIRED = (
        Kind.FORBIDDEN,
        "For your security, confirm it is you first: enter your password, or a code we send to your current number.",
    )
    PASSWORD_WRONG = (Kind.INVALID, "The password is wrong.")
    PASSWORDS_DIFFER = (Kind.INVALID, "The two new passwords are not the same.")
    PROOF_REQUIRED = (
        Kind.INVALID,
        "Enter your account password, or a code we email you, to prove it is you.",
    )
    PROOF_EMAIL_MISSING = (
        Kind.CONFLICT,
        "Your account has no email address for a code: enter your password instead.",
    )
    LINE_NOT_SUSPENDED = (Kind.CONFLICT, "This line is not suspended.")
    SUSPENSION_REASON_INVALID = (Kind.INVALID, "Choose whether the phone was lost or stolen.")
    ESIM_MOVE_LIMIT = (
        Kind.RATE_LIMITED,
        "The eSIM of this line has been moved {count} times in the last 24 hours. Try again later, or contact support.",
    )
    ESIM_PROFILE_RETIRED = (
        Kind.CONFLICT,
        "This eSIM profile was replaced by a newer one and can no longer be used.",
    )
    ACCOUNT_CLOSED = (Kind.UNAUTHENTICATED, "This account is closed and can no longer log in.")
    CLOSURE_PAYMENT_IN_PROGRESS = (
        Kind.CONFLICT,
        "A payment is still in progress. Finish or cancel it (or wait until it expires), then close the account.",
    )
    CLOSURE_NOT_CONFIRMED = (Kind.INVALID, "Tick the box to confirm that you have read what closing means.")
    TICKET_NOT_ANSWERABLE = (
        Kind.CONFLICT,
        "A reconciliation case has no subscriber to answer: add an internal note, or resolve it on the "
        "reconciliation page.",
    )
    ASSIGNEE_INVALID = (Kind.INVALID, "A ticket can only be assigned to a support or administrator account.")
    CLOSE_REASON_INVALID = (Kind.INVALID, "Choose why the ticket is closed.")
    LINK_TARGET_NOT_FOUND = (Kind.INVALID, "There is no such order, payment or reconciliation case.")
    SIP_ACCOUNT_MISSING = (
        Kind.CONFLICT,
        "This line has no SIP account: a line gets one when it is activated, and loses it when its number is recycled.",
    )

    @property
    def kind(self) -> Kind:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]

    @property
    def code(self) -> str:
        return self.name.lower()


class DomainError(Exception):
    """A failure the caller can act on; carries a stable code and the offending field, and for a
    refusal that passes with time (429), after how many seconds to try again (`retry_after`)."""

    def __init__(
        self, code: ErrorCode, field: str | None = None, *, retry_after: int | None = None, **params: Any
    ) -> None:
        self.error = code
        self.field = field
        self.params = params
        self.retry_after = retry_after
        super().__init__(code.message.format(**params) if params else code.message)

    @property
    def code(self) -> str:
        return self.error.code
