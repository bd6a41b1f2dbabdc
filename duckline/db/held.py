"""Keep what a block loads in its session until the block ends.

A Session's identity map holds its objects weakly: an object nobody references any more drops out
of it, and the next `session.get` of the same row reads it again. A flow that loads a row in one
function and shows it from another (payments.apply, then the order as it then stands) reads it
twice. Inside `holding(session)` every row loaded or inserted is referenced until the block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.orm import Session

_EVENTS = ("loaded_as_persistent", "pending_to_persistent")


@contextmanager
def holding(session: Session) -> Iterator[None]:
    held: list[object] = []

    def hold(_session: Session, instance: object) -> None:
        held.append(instance)

    for name in _EVENTS:
        event.listen(session, name, hold)
    try:
        yield
    finally:
        for name in _EVENTS:
            event.remove(session, name, hold)
