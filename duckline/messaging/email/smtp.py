"""Send email through an SMTP server (plain, STARTTLS or implicit TLS) with the standard library.

A message with our reference gets the Message-ID <reference@sender's domain>, the same on every attempt,
so a repeat (a worker died after the server accepted it, before recording that) is recognisably the same
message to the mail systems that drop duplicates by Message-ID.

Connections are kept and reused: connecting, TLS and AUTH cost several round trips, far more than
one message. An idle connection is checked with NOOP before reuse, given up after
`max_idle_seconds`, and retired after `max_messages_per_connection`; a connection that failed in
any way the protocol does not recover from is closed, never reused.
"""

from __future__ import annotations

import email.message
import email.policy
import logging
import smtplib
import socket
import ssl
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal

from duckline.messaging.email import EmailMessage, PermanentFailure

log = logging.getLogger("duckline.email")

Security = Literal["none", "starttls", "tls"]
_SECURITIES = ("none", "starttls", "tls")

# UTF-8 everywhere; bodies go out as base64 or quoted-printable (whichever is shorter) rather than
# raw 8-bit, so they survive any server, and headers (the Chinese subject) as RFC 2047 words.
_POLICY = email.policy.default.clone(cte_type="7bit")


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _answers(smtp: smtplib.SMTP) -> bool:
    try:
        return smtp.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


class SmtpEmailChannel:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        username: str | None,
        password: str | None,
        sender: str,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_seconds: float = 30.0,
        max_messages_per_connection: int = 100,
    ) -> None:
        if security not in _SECURITIES:
            raise ValueError(f"security must be one of {', '.join(_SECURITIES)}, not {security!r}")
        if not ((username or "") + (password or "")).isascii():
            raise ValueError("smtplib can only send ASCII user names and passwords")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.sender = sender
        self.timeout = timeout
        # smtplib's own default context verifies nothing; ours checks the certificate and host name.
        self.ssl_context = ssl_context if ssl_context is not None else ssl.create_default_context()
        address = parseaddr(sender)[1]
        self._envelope_from = address or sender
        self._domain = address.rpartition("@")[2] or None
        self.max_idle_seconds = max_idle_seconds
        self.max_messages_per_connection = max_messages_per_connection
        # Idle connections: (connection, when last used, messages sent on it). Each send takes one
        # out, so threads sending at once use connections of their own.
        self._idle: list[tuple[smtplib.SMTP, float, int]] = []
        self._lock = threading.Lock()
        self.connections_opened = 0

    def send(self, message: EmailMessage) -> str:
        try:
            mime = self._build(message)
        except ValueError as exc:  # e.g. a line break in a header: the same message will always fail
            raise PermanentFailure(f"cannot build the message: {exc}") from exc
        message_id = str(mime["Message-ID"])
        try:
            smtp, sent = self._take()
            try:
                smtp.send_message(mime, from_addr=self._envelope_from, to_addrs=[message.to])
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError):
                self._give_back(smtp, sent)  # smtplib has reset the transaction: still usable
                raise
            except BaseException:
                smtp.close()
                raise
        except smtplib.SMTPRecipientsRefused as exc:
            refusals = list(exc.recipients.values())
            if refusals and all(_is_permanent(code) for code, _ in refusals):
                code, reply = refusals[0]
                raise PermanentFailure(f"{code} {_text(reply)}") from exc
            raise
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, auth failed, ...
            if _is_permanent(exc.smtp_code):
                raise PermanentFailure(f"{exc.smtp_code} {_text(exc.smtp_error)}") from exc
            raise
        self._give_back(smtp, sent + 1)
        log.info("Email to %s sent: %s", message.to, message_id)
        return message_id

    def close(self) -> None:
        """Say goodbye on every idle connection (at shutdown)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for smtp, _, _ in idle:
            _quit(smtp)

    def _take(self) -> tuple[smtplib.SMTP, int]:
        """An idle connection that is recent and still answers NOOP, else a new one, logged in."""
        while True:
            with self._lock:
                if not self._idle:
                    break
                smtp, used_at, sent = self._idle.pop()
            if time.monotonic() - used_at <= self.max_idle_seconds and _answers(smtp):
                return smtp, sent
            _quit(smtp)
        smtp = self._connect()
        self.connections_opened += 1
        try:
            if self.username is not None:
                smtp.login(self.username, self.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp, 0

    def _give_back(self, smtp: smtplib.SMTP, sent: int) -> None:
        # A message the server accepted is sent, whatever happens to the connection afterwards.
        if sent >= self.max_messages_per_connection:
            _quit(smtp)
            return
        with self._lock:
            self._idle.append((smtp, time.monotonic(), sent))

    def _build(self, message: EmailMessage) -> email.message.EmailMessage:
        mime = email.message.EmailMessage(policy=_POLICY)
        mime["From"] = self.sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = format_datetime(datetime.now(UTC))
        mime["Message-ID"] = (
            make_msgid(domain=self._domain)
            if message.reference is None
            else f"<{message.reference}@{self._domain or socket.getfqdn()}>"
        )
        mime.set_content(message.text, charset="utf-8")
        if message.html is not None:
            mime.add_alternative(message.html, subtype="html", charset="utf-8")
        return mime

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.ssl_context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            try:
                smtp.ehlo()
                smtp.starttls(context=self.ssl_context)
                smtp.ehlo()
            except BaseException:
                smtp.close()
                raise
        return smtp
