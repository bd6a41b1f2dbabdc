"""What each running Gy server (`duckline ocs`) last said of its peers, for the console: the server
is another process (several may share a port), so it writes this table and the web server reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from duckline.db.base import Base
from duckline.db.types import BigId

# The row of the server process itself (a peer host no peer has): its CERs refused from any host
# (`refused`) and its connections closed on bad bytes before a CER (`errors`).
SERVER_ROW = ""


class DiameterPeerState(Base):
    """One allowed peer as one server process sees it: upserted on each of its events and every
    few seconds; `running` false once that process stopped cleanly (else its rows go stale)."""

    __tablename__ = "diameter_peer_states"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node: Mapped[str] = mapped_column(String(255))  # the server's Origin-Host
    instance: Mapped[str] = mapped_column(String(100))  # its process: host name and pid
    peer_host: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(10))  # connected, suspect, down (peers.PeerState)
    state_since: Mapped[datetime]
    connections: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(BigInteger)  # CERs accepted
    refused: Mapped[int] = mapped_column(BigInteger)  # CERs refused
    requests: Mapped[int] = mapped_column(BigInteger)
    answers: Mapped[dict[str, Any]]  # {Result-Code: count}
    errors: Mapped[int] = mapped_column(BigInteger)
    dropped: Mapped[int] = mapped_column(BigInteger)
    suspects: Mapped[int] = mapped_column(BigInteger)  # DWRs left unanswered
    last_event: Mapped[str] = mapped_column(String(200))
    last_event_at: Mapped[datetime | None]
    running: Mapped[bool]
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("node", "instance", "peer_host", name="uq_diameter_peer_states_peer"),)
