"""SMS channels behind one small interface."""

from __future__ import annotations

from typing import Protocol

from duckline.adapters.email import PermanentFailure

__all__ = ["PermanentFailure", "SmsChannel"]


class SmsChannel(Protocol):
    name: str

    def send(self, to: str, body: str) -> str:
        """Send one message (split into parts by the channel if long); return the channel's
        reference. Raise PermanentFailure for a refusal retrying cannot fix, else any exception."""
        ...
