"""The demo channel: emails are appended to a log file (and the Python log) instead of sent."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

from duckline.messaging.email import EmailMessage

log = logging.getLogger("duckline.email")


class LogEmailChannel:
    name = "log"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: EmailMessage) -> str:
        """Append one entry: a tab-separated line (time, to, reference, subject), then the text
        indented by four spaces, so every entry starts at the beginning of a line."""
        reference = message.reference or f"log-{uuid.uuid4().hex[:12]}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        subject = " ".join(message.subject.split())
        body = "".join(f"    {line}\n" for line in message.text.splitlines())
        with self.path.open("a", encoding="utf-8") as out:
            out.write(f"{stamp}\t{message.to}\t{reference}\t{subject}\n{body}")
        log.info("Email to %s: %s", message.to, subject)
        return reference

    def close(self) -> None:
        """Nothing is held open."""
