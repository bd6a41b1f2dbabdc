"""SmtpEmailChannel against a real SMTP server (aiosmtpd) on loopback, and LogEmailChannel."""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage as MimeMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from duckline.messaging.email import EmailMessage, PermanentFailure
from duckline.messaging.email.log import LogEmailChannel
from duckline.messaging.email.smtp import SmtpEmailChannel

SENDER = "Duckline 鴨綫 <billing@duckline.hk>"
TO = "chan.taiman@example.hk"
SUBJECT = "續費成功"
TEXT = "陳大文先生／女士：\n\n您的月費計劃已續費成功。\n收據編號 R2026-000001\n金額 HK$128.00\n"
HTML = "<p>您的月費計劃已續費成功。</p>\n<p>收據編號 R2026-000001，金額 HK$128.00</p>\n"
USER, PASSWORD = "duckline", "s3cret-pa55"


class Recorder:
    """An aiosmtpd handler that keeps what it receives; `replies` rejects a stage ("MAIL", "RCPT",
    "DATA") with the given reply instead of accepting it."""

    def __init__(self, replies: dict[str, str] | None = None, refused: frozenset[str] = frozenset()) -> None:
        self.replies = replies or {}
        self.refused = refused  # recipients answered 550
        self.envelopes: list[Envelope] = []
        self.peers: list[Any] = []  # the client's address and port of each delivery: one per connection
        self.over_tls: list[bool] = []
        self.logins: list[tuple[str, bytes]] = []

    async def handle_MAIL(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "MAIL" in self.replies:
            return self.replies["MAIL"]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "RCPT" in self.replies:
            return self.replies["RCPT"]
        if address in self.refused:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if "DATA" in self.replies:
            return self.replies["DATA"]
        assert server.transport is not None
        self.envelopes.append(envelope)
        self.peers.append(session.peer)
        self.over_tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 Message accepted for delivery"

    def authenticator(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((mechanism, auth_data.login))
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd replies 535 itself


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(handler: Recorder, port: int | None = None, **kwargs: Any) -> Iterator[int]:
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def channel(port: int, **overrides: Any) -> SmtpEmailChannel:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": None,
        "password": None,
        "sender": SENDER,
        "timeout": 5.0,
    } | overrides
    return SmtpEmailChannel(**settings)


def received(envelope: Envelope) -> MimeMessage:
    assert isinstance(envelope.content, bytes)
    parsed = message_from_bytes(envelope.content, policy=policy.default)
    assert isinstance(parsed, MimeMessage)
    return parsed


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A self-signed certificate for 127.0.0.1: (cert file, key file, cert PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "duckline test smtp")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "cert.pem", folder / "key.pem", pem.decode()


def server_context(certificate: tuple[Path, Path, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate[0], certificate[1])
    return context


def test_chinese_message_arrives_as_multipart_alternative() -> None:
    handler = Recorder()
    with serve(handler) as port:
        message_id = channel(port).send(EmailMessage(TO, SUBJECT, TEXT, HTML))

    [envelope] = handler.envelopes
    assert envelope.mail_from == "billing@duckline.hk"
    assert envelope.rcpt_tos == [TO]
    assert isinstance(envelope.content, bytes)
    envelope.content.decode("ascii")  # 7-bit clean on the wire: encoded words and base64/QP bodies
    mail = received(envelope)
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Subject"] == SUBJECT
    assert mail["To"] == TO
    assert mail["From"].addresses[0].display_name == "Duckline 鴨綫"
    assert mail["From"].addresses[0].addr_spec == "billing@duckline.hk"
    assert mail["Date"].datetime is not None
    assert mail["Message-ID"] == message_id
    assert message_id.startswith("<") and message_id.endswith("@duckline.hk>")
    text, html = mail.iter_parts()
    assert isinstance(text, MimeMessage) and isinstance(html, MimeMessage)
    assert text.get_content_type() == "text/plain" and text.get_content_charset() == "utf-8"
    assert html.get_content_type() == "text/html" and html.get_content_charset() == "utf-8"
    assert text.get_content() == TEXT
    assert html.get_content() == HTML


def test_message_without_html_is_a_single_text_part() -> None:
    handler = Recorder()
    body = "收據編號 R2026-000001，金額 HK$128.00"
    with serve(handler) as port:
        message_id = channel(port).send(EmailMessage(TO, SUBJECT, body))

    mail = received(handler.envelopes[0])
    assert not mail.is_multipart()
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content() == body + "\n"  # a MIME text body always ends its last line
    assert mail["Message-ID"] == message_id


def test_the_same_message_sent_again_has_the_same_message_id() -> None:
    """A message sent again (its worker died before recording it) keeps its Message-ID, by which mail
    systems recognise a repeat."""
    handler = Recorder()
    with serve(handler) as port:
        sender = channel(port)
        first = sender.send(EmailMessage(TO, SUBJECT, TEXT, reference="n17.4f9c2a"))
        again = sender.send(EmailMessage(TO, SUBJECT, TEXT, reference="n17.4f9c2a"))
        other = sender.send(EmailMessage(TO, SUBJECT, TEXT, reference="n18.77d0e1"))

    assert first == again == "<n17.4f9c2a@duckline.hk>" != other
    assert [received(e)["Message-ID"] for e in handler.envelopes] == [first, again, other]


def test_auth_login_with_the_right_password_delivers() -> None:
    handler = Recorder()
    with serve(
        handler, authenticator=handler.authenticator, auth_require_tls=False, auth_exclude_mechanism=["PLAIN"]
    ) as port:
        channel(port, username=USER, password=PASSWORD).send(EmailMessage(TO, SUBJECT, TEXT))

    assert handler.logins == [("LOGIN", USER.encode())]
    assert len(handler.envelopes) == 1


def test_auth_with_a_wrong_password_is_permanent() -> None:
    handler = Recorder()
    with (
        serve(handler, authenticator=handler.authenticator, auth_require_tls=False) as port,
        pytest.raises(PermanentFailure, match="535"),
    ):
        channel(port, username=USER, password="wrong").send(EmailMessage(TO, SUBJECT, TEXT))
    assert handler.envelopes == []


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("RCPT", "550 5.1.1 <chan.taiman@example.hk>: Recipient address rejected"),
        ("MAIL", "553 5.7.1 Sender address rejected"),
        ("DATA", "554 5.7.1 Message rejected as spam"),
    ],
)
def test_5xx_refusals_are_permanent_with_the_servers_reply(stage: str, reply: str) -> None:
    with serve(Recorder({stage: reply})) as port, pytest.raises(PermanentFailure) as refused:
        channel(port).send(EmailMessage(TO, SUBJECT, TEXT))
    assert str(refused.value) == reply


@pytest.mark.parametrize(
    ("stage", "reply", "error"),
    [
        ("RCPT", "451 4.3.0 Try again later", smtplib.SMTPRecipientsRefused),
        ("MAIL", "451 4.3.0 Try again later", smtplib.SMTPSenderRefused),
        ("DATA", "452 4.3.1 Insufficient system storage", smtplib.SMTPDataError),
    ],
)
def test_4xx_refusals_propagate_for_a_retry(stage: str, reply: str, error: type[Exception]) -> None:
    with serve(Recorder({stage: reply})) as port, pytest.raises(error) as refused:
        channel(port).send(EmailMessage(TO, SUBJECT, TEXT))
    assert not isinstance(refused.value, PermanentFailure)


def test_nothing_listening_propagates_the_connection_error() -> None:
    with pytest.raises(ConnectionRefusedError):
        channel(free_port()).send(EmailMessage(TO, SUBJECT, TEXT))


def test_a_server_that_never_answers_times_out_and_propagates() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the connection is accepted by the kernel, but no greeting ever comes
        port = silent.getsockname()[1]
        with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)) as failed:
            channel(port, timeout=0.3).send(EmailMessage(TO, SUBJECT, TEXT))
    assert not isinstance(failed.value, PermanentFailure)


def test_starttls_delivers_with_a_context_that_trusts_the_certificate(certificate: tuple[Path, Path, str]) -> None:
    handler = Recorder()
    client = ssl.create_default_context(cadata=certificate[2])
    with serve(
        handler,
        require_starttls=True,
        tls_context=server_context(certificate),
        authenticator=handler.authenticator,
    ) as port:  # AUTH here needs TLS (aiosmtpd's default), so logging in proves the upgrade too
        channel(port, security="starttls", ssl_context=client, username=USER, password=PASSWORD).send(
            EmailMessage(TO, SUBJECT, TEXT, HTML)
        )

    assert handler.over_tls == [True]
    assert handler.logins == [("PLAIN", USER.encode())]
    assert received(handler.envelopes[0])["Subject"] == SUBJECT


def test_starttls_refuses_an_untrusted_certificate_by_default(certificate: tuple[Path, Path, str]) -> None:
    handler = Recorder()
    with (
        serve(handler, require_starttls=True, tls_context=server_context(certificate)) as port,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        channel(port, security="starttls").send(EmailMessage(TO, SUBJECT, TEXT))
    assert handler.envelopes == []


def test_implicit_tls_delivers(certificate: tuple[Path, Path, str]) -> None:
    handler = Recorder()
    client = ssl.create_default_context(cadata=certificate[2])
    with serve(handler, ssl_context=server_context(certificate)) as port:
        channel(port, security="tls", ssl_context=client).send(EmailMessage(TO, SUBJECT, TEXT))

    assert handler.over_tls == [True]


def test_a_line_break_in_a_header_is_permanent() -> None:
    with pytest.raises(PermanentFailure):
        channel(free_port()).send(EmailMessage(TO, "續費成功\nBcc: everyone@example.hk", TEXT))


def test_unknown_security_is_refused() -> None:
    with pytest.raises(ValueError, match="security"):
        channel(25, security="ssl")


def test_non_ascii_credentials_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="ASCII"):  # smtplib would fail on every send instead
        channel(25, username=USER, password="密碼")


def test_log_channel_appends_each_message(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "email.log"
    log = LogEmailChannel(path)
    first = log.send(EmailMessage(TO, SUBJECT, TEXT, HTML))
    second = log.send(EmailMessage("wong@example.hk", "Your code", "Your code is 123456"))

    assert first != second and first.startswith("log-") and second.startswith("log-")
    entries = path.read_text(encoding="utf-8").splitlines()
    stamp, to, reference, subject = entries[0].split("\t")
    assert datetime.fromisoformat(stamp).tzinfo is not None
    assert (to, reference, subject) == (TO, first, SUBJECT)
    assert entries[1:6] == [f"    {line}" for line in TEXT.splitlines()]
    assert entries[6].split("\t")[1:] == ["wong@example.hk", second, "Your code"]
    assert entries[7] == "    Your code is 123456"
    assert log.name == "log" and SmtpEmailChannel.name == "smtp"


# --- connections are reused ----------------------------------------------------------------------


def messages(n: int) -> list[EmailMessage]:
    return [EmailMessage(TO, f"{SUBJECT} {i}", TEXT) for i in range(n)]


def test_messages_in_a_row_share_one_connection_and_one_login() -> None:
    handler = Recorder()
    with serve(
        handler, authenticator=handler.authenticator, auth_require_tls=False, auth_exclude_mechanism=["PLAIN"]
    ) as port:
        smtp = channel(port, username=USER, password=PASSWORD)
        ids = [smtp.send(m) for m in messages(5)]
        smtp.close()

    assert len(set(ids)) == 5 and len(handler.envelopes) == 5
    assert len(set(handler.peers)) == 1 and smtp.connections_opened == 1
    assert handler.logins == [("LOGIN", USER.encode())]


def test_a_connection_the_server_dropped_is_replaced_and_nothing_is_lost() -> None:
    handler = Recorder()
    port = free_port()
    smtp = channel(port)
    with serve(handler, port=port):
        smtp.send(messages(1)[0])
    with serve(handler, port=port):  # a restarted server: the kept connection is dead
        smtp.send(messages(1)[0])
        smtp.close()

    assert len(handler.envelopes) == 2 and len(set(handler.peers)) == 2
    assert smtp.connections_opened == 2


def test_a_refused_recipient_leaves_the_connection_usable() -> None:
    handler = Recorder(refused=frozenset({"nobody@example.hk"}))
    with serve(handler) as port:
        smtp = channel(port)
        smtp.send(EmailMessage(TO, SUBJECT, TEXT))
        with pytest.raises(PermanentFailure, match="550"):
            smtp.send(EmailMessage("nobody@example.hk", SUBJECT, TEXT))
        smtp.send(EmailMessage(TO, SUBJECT, TEXT))
        smtp.close()

    assert len(handler.envelopes) == 2 and len(set(handler.peers)) == 1


def test_connections_are_retired_after_a_number_of_messages_or_when_idle_too_long() -> None:
    handler = Recorder()
    with serve(handler) as port:
        capped = channel(port, max_messages_per_connection=2)
        for m in messages(5):
            capped.send(m)
        capped.close()
        never_idle = channel(port, max_idle_seconds=0)
        for m in messages(2):
            never_idle.send(m)
        never_idle.close()

    assert capped.connections_opened == 3 and never_idle.connections_opened == 2
    assert len(handler.envelopes) == 7 and len(set(handler.peers)) == 5
