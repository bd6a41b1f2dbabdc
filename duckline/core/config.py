"""All settings in one typed object, read from DUCKLINE_* environment variables or a .env file."""

from __future__ import annotations

import math
import string
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A development-only key so the embedded demo runs with no set-up; production refuses it.
DEV_SECRET = "duckline-development-secret-do-not-use-in-production"  # noqa: S105
KEY_MIN_LENGTH = 32
KEY_MIN_DISTINCT = 8  # a random 32-character hex key has fewer than 8 distinct characters about never
KEY_MIN_BITS = 128
KEY_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - names of "every interface", not a bind
THIS_MACHINE = ("127.0.0.1", "localhost", "::1", *WILDCARD_HOSTS)


def key_bits(key: str) -> float:
    """A generous estimate of a key's entropy: the length of its shortest repeating unit times the
    bits of the smallest alphabet it is written in (hex, or the character classes it uses). Random
    keys score their true strength; repeated or patterned ones ("s" * 32, "0123…f" * 4) score low."""
    unit = _shortest_period(key)
    if all(c in string.hexdigits for c in key):
        alphabet = 16
    else:
        classes = (string.digits, string.ascii_lowercase, string.ascii_uppercase)
        alphabet = sum(len(c) for c in classes if any(ch in c for ch in key))
        alphabet += 33 if any(not ch.isascii() or not ch.isalnum() for ch in key) else 0
    return unit * math.log2(max(alphabet, 2))


def _shortest_period(text: str) -> int:
    """The length of the unit `text` repeats at least twice (KMP failure function), else its length."""
    failure = [0] * (len(text) + 1)
    k = 0
    for i in range(1, len(text)):
        while k and text[i] != text[k]:
            k = failure[k]
        if text[i] == text[k]:
            k += 1
        failure[i + 1] = k
    period = len(text) - failure[len(text)]
    return period if 2 * period <= len(text) else len(text)


def key_weakness(key: str) -> str | None:
    """Why a key is not good enough for production, or None."""
    if key == DEV_SECRET:
        return "is the development default"
    if len(key) < KEY_MIN_LENGTH:
        return f"is shorter than {KEY_MIN_LENGTH} characters"
    if len(set(key)) < KEY_MIN_DISTINCT:
        return f"has fewer than {KEY_MIN_DISTINCT} distinct characters"
    if key_bits(key) < KEY_MIN_BITS:
        return f"is too regular (about {key_bits(key):.0f} bits of entropy, {KEY_MIN_BITS} needed)"
    return None


def base_url_mismatch(settings: Settings) -> str | None:
    """Why the base URL cannot be right, or None. Only in development, and only for a base URL on
    this machine at another port than the one served: there, every payment page, return URL and
    sandbox webhook would reach another server or none (a second instance, say). A base URL naming
    another host is a tunnel or a proxy in front of us, which is what setting it is for."""
    if not settings.base_url_is_explicit or settings.environment != "development":
        return None
    url = urlsplit(settings.base_url)
    try:
        port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    except ValueError:
        return f"DUCKLINE_BASE_URL={settings.base_url} is not a URL"
    if url.hostname in THIS_MACHINE and port != settings.port:
        return (
            f"DUCKLINE_BASE_URL is {settings.base_url} but the server listens on port {settings.port}: payment"
            f" pages, return URLs and the sandbox's webhooks would go to port {port}. Unset DUCKLINE_BASE_URL"
            f" (it then follows --port) or set it to {listening_url(settings.host, settings.port)}."
        )
    return None


def listening_url(host: str, port: int) -> str:
    """The URL at which a server bound to host:port is reached from this machine."""
    shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUCKLINE_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///var/duckline.db"
    secret_key: str = DEV_SECRET
    # Key for identity numbers and document images; separate from the session key so either
    # can be rotated without the other.
    data_key: str = DEV_SECRET

    host: str = "127.0.0.1"
    port: int = 8000
    # Where payers' browsers and providers' webhooks reach us. Left unset, it follows host and port
    # (`duckline serve --port 8101` → http://127.0.0.1:8101); set it behind a proxy or a tunnel.
    base_url: str = ""

    default_region: str = "HK"
    allowed_regions: tuple[str, ...] = ("HK", "CN", "MO")
    default_currency: str = "HKD"
    display_timezone: str = "Asia/Hong_Kong"

    max_lines_per_identity: int = 10
    min_age_without_guardian: int = 16
    kyc_auto_approve: bool = True
    document_max_bytes: int = 5 * 1024 * 1024

    otp_ttl_seconds: int = 300
    # Wrong codes one challenge takes before a new code is needed (what stops guessing).
    otp_max_attempts: int = 5
    # Codes actually sent to one phone (or email address) for one purpose (registration, password
    # reset, contact change, …): one a minute, 5 an hour, 10 a day. Input refused before a code
    # goes out counts nothing.
    otp_resend_interval_seconds: int = 60
    otp_max_sends_per_hour: int = 5
    otp_max_sends_per_day: int = 10
    # Codes sent from one client address, whatever their destination: a household or an office
    # behind one NAT address has room for normal use.
    otp_address_rate_limit: str = "30/hour"
    login_rate_limit: str = "10/minute"
    # Codes checked from one client address (each challenge also takes otp_max_attempts wrong ones).
    otp_rate_limit: str = "30/minute"
    # Where the limits count: memory:// holds per process; redis://host:6379/0 is shared by every
    # process of a deployment (`serve --workers`, several hosts).
    rate_limit_storage: str = "memory://"
    rate_limit_prefix: str = "duckline"
    # Consecutive wrong passwords that lock an account's sign-in, and for how long. A reset by SMS
    # code unlocks it at once, so a stranger's guesses never keep the owner out for long.
    login_lockout_failures: int = 5
    login_lockout_minutes: int = 15

    # Online charging (Diameter Gy): what a request that names no amount is granted, per kind
    # (voice seconds, SMS, data bytes), and how long a grant holds before it must be re-asked.
    quota_default_units: dict[str, int] = {"voice": 300, "sms": 1, "data": 10 * 1024 * 1024}
    quota_validity_seconds: int = 3600
    # Numbers a call or SMS to is never refused nor charged, as dialled (the +852 forms count too).
    emergency_numbers: tuple[str, ...] = ("999", "112", "911")
    # The Gy server (`duckline ocs`): where it listens, who it is, and which network elements may
    # connect (Diameter URIs, e.g. "aaa://pgw1.operator.example:3868;transport=tcp"; no others).
    diameter_host: str = "127.0.0.1"
    diameter_port: int = 3868
    diameter_origin_host: str = "ocs.duckline.example"
    diameter_realm: str = "duckline.example"
    diameter_peers: list[str] = []
    # Batches of credit-control requests charged at once, each in its own transaction (a batch is
    # what arrived while the others were being charged: a group commit); requests waiting beyond
    # diameter_max_waiting are answered 3004 TOO_BUSY at once.
    diameter_max_threads: int = Field(default=2, ge=1)
    diameter_max_waiting: int = Field(default=4096, ge=1)
    # What CEA says of us: Vendor-Id is the operator's IANA Private Enterprise Number (0: none,
    # "ignore this field", RFC 6733 §5.3.3); Product-Name the software.
    diameter_vendor_id: int = Field(default=0, ge=0, le=0xFFFFFFFF)
    diameter_product_name: str = "Duckline"
    # Tw (RFC 3539): a DWR after this long without a message from a peer; as long again without
    # one, the connection is suspect; again, down. RFC 3539 wants at least 6 s; tests use less.
    diameter_watchdog_seconds: float = Field(default=30.0, gt=0)
    # How often each Gy server writes its peers' state for the console (also at every peer event);
    # a server silent for 3 times this (at least 30 s) shows as stale.
    diameter_status_seconds: float = Field(default=5.0, gt=0)
    # Requests of ours (RAR when a line is renewed, ASR when it leaves service): the OCS looks for
    # new ones this often; each waits this long for its answer, and is sent once more if none came.
    diameter_signal_poll_seconds: float = Field(default=1.0, gt=0)
    diameter_request_timeout_seconds: float = Field(default=5.0, gt=0)
    # A session with no request for this long (its element never sent CCR-TERMINATE) is closed and
    # its reservations released; keep it a few times quota_validity_seconds. Looked for this often.
    diameter_session_timeout_seconds: int = Field(default=3 * 3600, gt=0)
    diameter_session_reap_seconds: float = Field(default=60.0, gt=0)

    # The SIP server (Kamailio, configured by `duckline sip config`): the domain subscribers register
    # in (the digest realm: changing it invalidates every stored HA1, so each subscriber would reset
    # their SIP password), the address and port it listens on (UDP and TCP), and the peer calls to
    # numbers outside the service are relayed to (a SIP URI, e.g. "sip:127.0.0.1:5070"; empty: 480).
    sip_domain: str = "sip.duckline.example"
    sip_listen: str = "127.0.0.1:5060"
    sip_gateway: str = ""

    # argon2id cost; lower it only for tests, where hashing time dominates.
    password_time_cost: int = 3
    password_memory_kib: int = 65536

    session_max_age_seconds: int = 7 * 24 * 3600
    # How long a fresh proof of the account holder (password or SMS code) lets a session change
    # the login phone, the email or the password; and how often a token's "last used" is written.
    step_up_ttl_seconds: int = 300
    token_last_used_interval_seconds: int = 60
    api_token_ttl_days: int = 30

    usage_alert_thresholds: tuple[int, ...] = (75, 90, 100)
    expiry_warning_days: tuple[int, ...] = (7, 3, 1)

    # Usage records must have started within this window around now: older records are too late to
    # charge (the period they belong to is closed), later ones are a network element's clock gone wrong.
    usage_max_age_days: int = 90
    usage_max_future_minutes: int = 15

    # Largest request body, by kind of route (beyond: 413 payload_too_large): routes taking a
    # document image, bulk lists (usage batches, number imports), everything else.
    upload_max_bytes: int = 10 * 1024 * 1024
    bulk_max_bytes: int = 4 * 1024 * 1024
    body_max_bytes: int = 256 * 1024

    # Renewal: Hong Kong operators' top-up rules (minor units of default_currency).
    order_minimum: int = 5_000
    order_maximum: int = 100_000
    monthly_line_limit: int = 300_000
    order_payment_minutes: int = 30  # an unpaid order expires after this
    grace_days: int = 30  # after expiry, the number can be reclaimed by renewing
    retention_days: int = 60  # after grace: renewable still, then the number is recycled
    auto_renew_hours_before: int = 24
    auto_renew_retry_hours: tuple[int, ...] = (0, 6, 24, 48)  # dunning schedule from the first try
    reconcile_after_minutes: int = 10  # payments still open this long are asked about
    # Personal data (PDPO): how often a subscriber may download everything held about them, and
    # what a closed account leaves behind for how long (stated on the closure page before it is
    # confirmed). Contact details go first; the identity record is kept as long as the real-name
    # registration rules ask after the service ends; money records for the tax record period.
    export_rate_limit: str = "5/hour"
    closure_contact_days: int = 30
    closure_identity_days: int = 365
    financial_records_years: int = 7  # Inland Revenue Ordinance s.51C

    # Payment providers: the sandbox is built in; the others are on when their keys are set.
    sandbox_enabled: bool = True
    sandbox_webhook_secret: str = "whsec_duckline_sandbox_development"  # noqa: S105
    sandbox_webhook_delay_seconds: float = 1.0
    sandbox_duplicate_webhooks: bool = True
    card_provider: Literal["sandbox", "stripe"] = "sandbox"
    alipay_provider: Literal["sandbox", "alipay"] = "sandbox"
    wechatpay_provider: Literal["sandbox", "wechatpay"] = "sandbox"
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str | None = None
    # How long to wait for Stripe's answer; a call that outlives it has an unknown outcome, which
    # Duckline settles by asking Stripe about the payment's reference (see billing/checkout.py).
    stripe_timeout_seconds: float = 10.0
    stripe_publishable_key: str = ""  # pk_…: the payer's browser confirms the PaymentIntent with it
    # Where the card page loads Stripe.js from; Stripe requires js.stripe.com itself. Tests point
    # it at a stand-in on loopback.
    stripe_js_url: str = "https://js.stripe.com/v3/"
    alipay_app_id: str = ""
    alipay_app_private_key: str = ""  # PEM
    alipay_public_key: str = ""  # PEM, Alipay's
    alipay_gateway: str = "https://openapi.alipay.com/gateway.do"
    wechatpay_mchid: str = ""
    wechatpay_appid: str = ""
    wechatpay_private_key: str = ""  # PEM (PKCS#8), the merchant's
    wechatpay_cert_serial_no: str = ""
    wechatpay_apiv3_key: str = ""
    wechatpay_public_key: str = ""  # PEM, WeChat Pay's platform public key
    wechatpay_public_key_id: str = ""
    wechatpay_base_url: str | None = None

    smdp_address: str = "smdp.duckline.example"
    iccid_prefix: str = "8985201"
    # Moving an eSIM to a new phone retires the installed profile: at most this many a day per line.
    esim_moves_per_day: int = 3
    # SIP accounts (duckline/sip): phones register with this server (host:port, as shown on the
    # line page; `sip_listen` is where Kamailio binds, which may differ behind NAT).
    sip_server: str = "127.0.0.1:5060"
    sip_reset_rate_limit: str = "10/hour"  # SIP password resets, per account and per address

    # Channels: the demo writes to files under log_dir; production sets SMTP and SMPP or HTTP.
    sms_channel: Literal["log", "smpp", "http"] = "log"
    email_channel: Literal["log", "smtp"] = "log"
    # Send queued messages at once after the request's commit too, instead of waiting for the
    # worker's next round; off by default so requests never wait on an SMSC or SMTP server.
    deliver_after_commit: bool = False
    # How long a worker's claim on the messages it is sending holds without news from it; it renews
    # the claim while it makes progress. A worker that dies leaves its messages waiting this long, so
    # it is kept short beside otp_ttl_seconds: a code must arrive while it still works.
    notification_lease_seconds: int = 30
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "Duckline <no-reply@duckline.example>"
    smpp_host: str = "127.0.0.1"
    smpp_port: int = 2775
    smpp_system_id: str = ""
    smpp_password: str = ""
    smpp_source_addr: str = "Duckline"
    sms_http_url: str = ""
    sms_http_secret: str = ""
    sms_sender: str = "Duckline"
    log_dir: Path = Path("var")

    @model_validator(mode="after")
    def _refuse_weak_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            for name in ("secret_key", "data_key"):
                weakness = key_weakness(getattr(self, name))
                if weakness:
                    raise ValueError(
                        f"DUCKLINE_{name.upper()} {weakness}: production needs a random value of at least"
                        f" {KEY_MIN_LENGTH} characters, e.g. from {KEY_COMMAND}"
                    )
            if self.secret_key == self.data_key:  # one leaked key must not also open the other's data
                raise ValueError("DUCKLINE_DATA_KEY must differ from DUCKLINE_SECRET_KEY in production")
        return self

    @model_validator(mode="after")
    def _leases_short_beside_codes(self) -> Settings:
        if not 0 < self.notification_lease_seconds * 4 <= self.otp_ttl_seconds:
            raise ValueError(
                "DUCKLINE_NOTIFICATION_LEASE_SECONDS must be positive and at most a quarter of "
                "DUCKLINE_OTP_TTL_SECONDS, so that a code a dead worker held still arrives in time"
            )
        return self

    @model_validator(mode="after")
    def _base_url_follows_the_listening_address(self) -> Settings:
        explicit = bool(self.base_url)
        self.base_url = (self.base_url or listening_url(self.host, self.port)).rstrip("/")
        if not explicit:
            self.model_fields_set.discard("base_url")
        return self

    @property
    def base_url_is_explicit(self) -> bool:
        """Whether DUCKLINE_BASE_URL (or the caller) chose the base URL, rather than host and port."""
        return "base_url" in self.model_fields_set

    @model_validator(mode="after")
    def _providers_need_their_keys(self) -> Settings:
        needs = {
            "stripe": (
                self.card_provider == "stripe",
                ("stripe_secret_key", "stripe_webhook_secret", "stripe_publishable_key"),
            ),
            "alipay": (
                self.alipay_provider == "alipay",
                ("alipay_app_id", "alipay_app_private_key", "alipay_public_key"),
            ),
            "wechatpay": (
                self.wechatpay_provider == "wechatpay",
                (
                    "wechatpay_mchid",
                    "wechatpay_appid",
                    "wechatpay_private_key",
                    "wechatpay_cert_serial_no",
                    "wechatpay_apiv3_key",
                    "wechatpay_public_key",
                    "wechatpay_public_key_id",
                ),
            ),
        }
        for provider, (chosen, fields) in needs.items():
            missing = [f"DUCKLINE_{f.upper()}" for f in fields if chosen and not getattr(self, f)]
            if missing:
                raise ValueError(f"the {provider} provider needs {', '.join(missing)}")
        if self.environment == "production" and self.sandbox_enabled:
            # Off by default in production; switching it on explicitly there is refused.
            if "sandbox_enabled" in self.model_fields_set:
                raise ValueError("DUCKLINE_SANDBOX_ENABLED must be false in production")
            self.sandbox_enabled = False
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    # In the embedded default the background worker runs inside `duckline serve`.
    worker_in_process: bool = True
    worker_interval_seconds: float = 2.0
