"""SMS channels behind one small interface."""

from __future__ import annotations

from typing import Protocol

from duckline.messaging.email import PermanentFailure

__all__ = ["PermanentFailure", "SmsChannel"]


class SmsChannel(Protocol):
    name: str

    def send(self, to: str, body: str, reference: str | None = None) -> str:
        """Send one message (split into parts by the channel if long); return the channel's
        reference. `reference` is ours, the same on every attempt at one message: the channel hands
        it to the gateway so that a repeat (a worker died before recording that it was sent) can be
        told apart. Raise PermanentFailure for a refusal retrying cannot fix, else any exception."""
        ...
