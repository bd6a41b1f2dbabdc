"""Email channels behind one small interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str | None = None
    # Ours, the same on every attempt at one message (a dot-atom: letters, digits, "-", "."): the
    # channel makes its Message-ID from it, so a repeat is recognisably the same message.
    reference: str | None = None


class PermanentFailure(Exception):
    """The channel refused the message for good (bad address, rejected recipient): do not retry."""


class EmailChannel(Protocol):
    name: str

    def send(self, message: EmailMessage) -> str:
        """Send one message; return the channel's reference (e.g. the Message-ID). Raise
        PermanentFailure for a refusal that retrying cannot fix, any other exception to retry."""
        ...

    def close(self) -> None:
        """Let go of anything held open (connections), at shutdown."""
        ...
