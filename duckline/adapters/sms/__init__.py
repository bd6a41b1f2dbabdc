"""SMS channels behind one small interface."""

from __future__ import annotations

from typing import Protocol


class SmsChannel(Protocol):
    name: str

    def send(self, to: str, body: str) -> str:
        """Send one message; return the channel's reference for it. Raise on failure."""
        ...
