"""The staff API of online charging: the Gy servers' peers as each server last reported them, and
the credit-control sessions still open (the console's charging page, as JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from duckline.accounts.models import Account
from duckline.accounts.roles import CHARGING_READERS
from duckline.catalog.rules import Unit, Zone
from duckline.diameter import board
from duckline.usage import open_sessions
from duckline.web.deps import RuntimeDep, require_roles
from duckline.web.fields import Cursor
from duckline.web.schemas import Page

router = APIRouter(prefix="/charging", tags=["charging"])
Reader = Annotated[Account, Depends(require_roles(CHARGING_READERS))]


class AnswerCountOut(BaseModel):
    result_code: int
    count: int


class PeerOut(BaseModel):
    host: str
    state: str = Field(description="connected, suspect, down; stale or stopped when its server is")
    since: datetime
    connections: int = Field(description="open now")
    accepted: int = Field(description="CERs accepted")
    refused: int = Field(description="CERs refused")
    requests: int
    answers: list[AnswerCountOut]
    errors: int
    dropped: int = Field(description="answers whose connection was gone")
    suspects: int = Field(description="DWRs left unanswered")
    last_event: str
    last_event_at: datetime | None


class ServerOut(BaseModel):
    node: str = Field(description="its Origin-Host")
    instance: str = Field(description="its process: host name and pid")
    condition: str = Field(description="running, stale (not heard from lately) or stopped")
    started_at: datetime
    updated_at: datetime
    refused: int = Field(description="CERs refused, from any host")
    garbage: int = Field(description="connections closed on bad bytes before a CER was accepted")
    peers: list[PeerOut]


class ReservationOut(BaseModel):
    rating_group: int = Field(description="-1: units asked outside any rating group")
    unit: Unit
    zone: Zone
    reserved: int
    expires_at: datetime


class CreditSessionOut(BaseModel):
    session_id: str
    line_id: int
    msisdn: str
    opened_at: datetime
    last_request_at: datetime
    last_request_number: int
    expires_at: datetime
    expired: bool
    reservations: list[ReservationOut]


@router.get("/peers", response_model=list[ServerOut])
def peers(runtime: RuntimeDep, viewer: Reader) -> list[ServerOut]:
    """Each Gy server that runs or stopped lately, with its peers' state and counters."""
    return [
        ServerOut(
            node=s.node,
            instance=s.instance,
            condition=s.condition,
            started_at=s.started_at,
            updated_at=s.updated_at,
            refused=s.refused,
            garbage=s.garbage,
            peers=[
                PeerOut(
                    host=p.host,
                    state=p.state,
                    since=p.since,
                    connections=p.connections,
                    accepted=p.accepted,
                    refused=p.refused,
                    requests=p.requests,
                    answers=[AnswerCountOut(result_code=code, count=count) for code, count in p.answers],
                    errors=p.errors,
                    dropped=p.dropped,
                    suspects=p.suspects,
                    last_event=p.last_event,
                    last_event_at=p.last_event_at,
                )
                for p in s.peers
            ],
        )
        for s in board.servers(runtime.unit_of_work, viewer)
    ]


@router.get("/sessions", response_model=Page[CreditSessionOut])
def sessions(
    runtime: RuntimeDep,
    viewer: Reader,
    msisdn: Annotated[str, Query(max_length=30, description="one line's sessions only")] = "",
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[CreditSessionOut]:
    """The credit-control sessions still open, newest first, with what each holds per rating group."""
    found = open_sessions.open_sessions(runtime.unit_of_work, viewer, msisdn, cursor, limit)
    return Page[CreditSessionOut](
        items=[
            CreditSessionOut(
                session_id=s.session_id,
                line_id=s.line_id,
                msisdn=s.msisdn,
                opened_at=s.opened_at,
                last_request_at=s.last_request_at,
                last_request_number=s.last_request_number,
                expires_at=s.expires_at,
                expired=s.expired,
                reservations=[
                    ReservationOut(
                        rating_group=r.rating_group,
                        unit=r.unit,
                        zone=r.zone,
                        reserved=r.reserved,
                        expires_at=r.expires_at,
                    )
                    for r in s.reservations
                ],
            )
            for s in found.sessions
        ],
        next_cursor=found.next_cursor,
    )
