"""Bodies of the line self-care routes: a lost phone, resuming, moving the eSIM."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from duckline.lines.schemas import EsimOut, LineOut


class ReportLostIn(BaseModel):
    reason: Literal["lost", "stolen"] = "lost"


class ProofIn(BaseModel):
    """Fresh proof of the account holder: the password, or the code emailed by …/proof-code."""

    password: str | None = Field(default=None, max_length=200)
    code: str | None = Field(default=None, pattern=r"^\d{6}$")


class ResumeIn(ProofIn):
    reason: str | None = Field(default=None, max_length=300, description="staff only: why the line is resumed")


class ProofCodeIn(BaseModel):
    purpose: Literal["resume", "esim_move"]


class ProofCodeOut(BaseModel):
    channel: Literal["email"] = "email"
    sent_to: str = Field(description="the address the code went to, masked")


class EsimMovedOut(BaseModel):
    line: LineOut
    esim: EsimOut


class EsimProfileStateOut(BaseModel):
    """An eSIM profile the network may let attach or download: the current one of a line."""

    iccid: str
    msisdn: str
    line_id: int
    in_service: bool
