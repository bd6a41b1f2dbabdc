"""The demo channel: messages are appended to a log file (and the Python log) instead of sent."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("duckline.sms")


class LogSmsChannel:
    name = "log"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, to: str, body: str, reference: str | None = None) -> str:
        reference = reference or f"log-{uuid.uuid4().hex[:12]}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with self.path.open("a", encoding="utf-8") as out:
            out.write(f"{stamp}\t{to}\t{reference}\t{body}\n")
        log.info("SMS to %s: %s", to, body)
        return reference
