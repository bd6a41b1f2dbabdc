"""The demo channel: messages are appended to a log file instead of sent (the Python log only says
that one was, never its text, which may carry a one-time code)."""

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
        log.info("SMS to %s: %s", to, reference)  # not the text: it may carry a one-time code
        return reference

    def recent(self, limit: int) -> list[dict[str, str]]:
        """The last `limit` messages written, newest first: where the demo reads its codes, since the
        stored messages keep none once sent."""
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        entries = [line.split("\t", 3) for line in reversed(lines)]
        return [
            {"to": to, "body": body, "reference": reference, "at": at}
            for at, to, reference, body in (entry for entry in entries if len(entry) == 4)
        ][:limit]
