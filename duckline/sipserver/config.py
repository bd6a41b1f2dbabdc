"""Render Kamailio's configuration (deploy/kamailio/kamailio.cfg.j2) from Duckline's settings."""

from __future__ import annotations

from pathlib import Path

import jinja2
from sqlalchemy.engine import make_url

from duckline.core.config import Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "kamailio.cfg.j2"


class SipConfigError(ValueError):
    """Settings Kamailio cannot be configured from."""


def kamailio_db_url(database_url: str) -> str:
    """Kamailio's db_postgres URL for Duckline's database: postgres://user:pass@host:port/db.

    Kamailio reads PostgreSQL only; an SQLite database is refused rather than rendered useless."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise SipConfigError(
            f"Kamailio cannot read a {url.get_backend_name()} database: set DUCKLINE_DATABASE_URL to PostgreSQL"
        )
    if url.query:
        # db_postgres takes no connection options; silently dropping them (sslmode…) would be worse.
        raise SipConfigError("Kamailio's db_url takes no query options: remove them from DUCKLINE_DATABASE_URL")
    if not url.database:
        raise SipConfigError("DUCKLINE_DATABASE_URL names no database")
    # Kamailio splits its URL at ':', '@' and '/' and does not percent-decode: such characters in
    # the user name or password cannot be written at all.
    for part, value in (("user name", url.username or ""), ("password", url.password or "")):
        if any(ch in value for ch in ":@/"):
            raise SipConfigError(f"Kamailio cannot use a database {part} containing ':', '@' or '/'")
    credentials = f"{url.username}:{url.password}@" if url.password else f"{url.username}@" if url.username else ""
    host = f"[{url.host}]" if url.host and ":" in url.host else url.host or "localhost"
    return f"postgres://{credentials}{host}:{url.port or 5432}/{url.database}"


def _cfg_string(name: str, value: str) -> str:
    """A value that goes between double quotes (or bare) in kamailio.cfg: no quote, backslash or line break."""
    if any(ch in value for ch in '"\\\r\n') or not value.isprintable():
        raise SipConfigError(f"{name} cannot contain quotes, backslashes or control characters: {value!r}")
    return value


def render(settings: Settings) -> str:
    """kamailio.cfg for these settings."""
    listen = _cfg_string("DUCKLINE_SIP_LISTEN", settings.sip_listen)
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SipConfigError(f"DUCKLINE_SIP_LISTEN must be address:port, e.g. 127.0.0.1:5060, not {listen!r}")
    gateway = _cfg_string("DUCKLINE_SIP_GATEWAY", settings.sip_gateway)
    if gateway and not gateway.startswith(("sip:", "sips:")):
        raise SipConfigError(f"DUCKLINE_SIP_GATEWAY must be a SIP URI, e.g. sip:127.0.0.1:5070, not {gateway!r}")
    if not TEMPLATE.is_file():  # an installed copy without the repository's deploy/ folder
        raise SipConfigError(f"the Kamailio template is missing: {TEMPLATE} (run Duckline from its repository)")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 (a Kamailio configuration, not HTML)
    )
    return environment.get_template(TEMPLATE.name).render(
        domain=_cfg_string("DUCKLINE_SIP_DOMAIN", settings.sip_domain),
        listen=listen,
        gateway=gateway,
        db_url=_cfg_string("DUCKLINE_DATABASE_URL", kamailio_db_url(settings.database_url)),
    )
