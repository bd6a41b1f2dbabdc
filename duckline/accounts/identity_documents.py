"""The scan of an identity document, shown to the staff who review identities.

It is stored encrypted (accounts.service) and decrypted here, for one answer at a time: nothing
keeps the plain bytes, and every view is written to the audit log in the same transaction, so a
view that cannot be audited does not happen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from duckline.accounts.models import Account, DocumentImage, Person
from duckline.accounts.roles import KYC_REVIEWERS
from duckline.core.errors import DomainError, ErrorCode
from duckline.core.unit_of_work import UnitOfWork
from duckline.db.types import is_id
from duckline.staff import audit

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}


@dataclass(frozen=True)
class DocumentScan:
    content: bytes
    content_type: str
    filename: str


@dataclass(frozen=True)
class DocumentInfo:
    """What a page may say about the scan without opening it."""

    content_type: str
    size: int
    uploaded_at: datetime


def latest(uow: UnitOfWork, person_id: int) -> DocumentImage | None:
    """The scan under review: the one sent last (a resubmission brings a new one)."""
    return uow.session.scalars(
        select(DocumentImage).where(DocumentImage.person_id == person_id).order_by(DocumentImage.id.desc()).limit(1)
    ).first()


def info(uow: UnitOfWork, person_id: int) -> DocumentInfo | None:
    image = latest(uow, person_id)
    return DocumentInfo(image.content_type, image.size, image.created_at) if image else None


def view(uow: UnitOfWork, actor: Account, person_id: int) -> DocumentScan:
    """The person's latest scan, decrypted, for an identity reviewer; the view is audited."""
    if actor.role not in KYC_REVIEWERS:  # checked by the web layer too; this is the rule itself
        raise DomainError(ErrorCode.FORBIDDEN)
    person = uow.session.get(Person, person_id) if is_id(person_id) else None
    image = latest(uow, person.id) if person else None
    if image is None:
        raise DomainError(ErrorCode.NOT_FOUND)
    content = uow.protector.decrypt(image.cipher)  # authenticated: a tampered row fails here
    audit.record(uow, actor.id, "kyc.document_viewed", f"person:{person_id}", document=image.id)
    extension = _EXTENSIONS.get(image.content_type, "bin")
    return DocumentScan(content, image.content_type, f"identity-document-{person_id}.{extension}")
