"""Identity reviewers' flows: an identity record (document number masked), its scan, and the
real-name review, from the API (by person) and from the console (by subscriber)."""

from __future__ import annotations

from duckline.accounts import identity_documents
from duckline.accounts import service as accounts
from duckline.accounts.identity import KycStatus
from duckline.accounts.models import Account, Person
from duckline.accounts.roles import Role
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import Transactions
from duckline.db.types import is_id


def person_record(transactions: Transactions, viewer: Account, person_id: int) -> Person:
    with transactions() as uow:
        person = uow.session.get(Person, person_id) if is_id(person_id) else None
        if person is None:
            raise DomainError(ErrorCode.NOT_FOUND)
        return person


def document_scan(transactions: Transactions, viewer: Account, person_id: int) -> identity_documents.DocumentScan:
    """The scan, decrypted for this answer only; the view is audited."""
    with transactions() as uow:
        return identity_documents.view(uow, viewer, person_id)


def review(transactions: Transactions, actor: Account, person_id: int, status: KycStatus, reason: str | None) -> Person:
    """Accept or reject a real-name registration; a rejection needs a reason the subscriber sees."""
    if status is KycStatus.REJECTED and not (reason or "").strip():
        raise DomainError(ErrorCode.VALIDATION_FAILED, field="reason")
    with transactions() as uow:
        return accounts.set_kyc(uow, actor, person_id, status, reason)


def review_subscriber(
    transactions: Transactions, actor: Account, account_id: int, status: KycStatus, reason: str | None
) -> Person:
    """`review` of a subscriber's identity, from the console's subscriber page."""
    with transactions() as uow:
        account = uow.session.get(Account, account_id) if is_id(account_id) else None
        if account is None or account.person_id is None or account.role is not Role.SUBSCRIBER:
            raise DomainError(ErrorCode.NOT_FOUND)
        return accounts.set_kyc(uow, actor, account.person_id, status, reason)
