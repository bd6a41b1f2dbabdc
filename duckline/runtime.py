"""The composition root: builds the engine, keys, channels and limits once, at start-up."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

import duckline.db.models  # noqa: F401  (every table mapped before the first flush)
from duckline.billing.order_states import PaymentMethod
from duckline.billing.providers import PaymentProvider
from duckline.billing.providers.gateway import Payments
from duckline.billing.providers.sandbox import SandboxProvider
from duckline.core.clock import Clock, SystemClock
from duckline.core.config import Settings
from duckline.core.protection import DataProtector, Passwords, SecretHasher
from duckline.core.unit_of_work import UnitOfWork
from duckline.db.engine import Database, make_engine
from duckline.db.migrate import ensure_migrated
from duckline.messaging.email import EmailChannel
from duckline.messaging.notifications import DeliveryPolicy, deliver_due
from duckline.messaging.sms import SmsChannel
from duckline.messaging.sms.log import LogSmsChannel

if TYPE_CHECKING:
    from duckline.billing.providers.stripe_card import StripeJs


class RateLimits:
    """Moving-window limits keyed by phone, account or client address: "login" (password
    attempts), "otp" (codes checked), "otp_send" (codes sent from one address), "export" and
    "sip_reset" (SIP password resets). In memory they hold per process; several server processes
    share them through Redis (`rate_limit_storage`)."""

    def __init__(self, settings: Settings) -> None:
        options = {"key_prefix": settings.rate_limit_prefix} if settings.rate_limit_storage.startswith("redis") else {}
        self._limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage, **options))
        self._rules = {
            "login": parse(settings.login_rate_limit),
            "otp": parse(settings.otp_rate_limit),
            "otp_send": parse(settings.otp_address_rate_limit),
            "export": parse(settings.export_rate_limit),
            "sip_reset": parse(settings.sip_reset_rate_limit),
        }

    def hit(self, rule: str, *keys: str) -> bool:
        """Count one attempt against every key; False if any of them is over its limit."""
        return all([self._limiter.hit(self._rules[rule], rule, key) for key in keys])

    def wait(self, rule: str, *keys: str) -> int:
        """Seconds until every key has room for one more under `rule` (0: now), counting nothing."""
        limit = self._rules[rule]
        waits = [0]
        for key in keys:
            if not self._limiter.test(limit, rule, key):
                reset = self._limiter.get_window_stats(limit, rule, key).reset_time
                waits.append(max(1, math.ceil(reset - time.time())))
        return max(waits)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        sms: SmsChannel | None = None,
        email: EmailChannel | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.db = Database(make_engine(settings.database_url))
        self.protector = DataProtector(settings.data_key)
        self.secrets = SecretHasher(settings.secret_key)
        self.passwords = Passwords(settings.password_time_cost, settings.password_memory_kib)
        self.sms = sms or self._sms_channel(settings)
        self.email = email or self._email_channel(settings)
        self.rate_limits = RateLimits(settings)
        self.delivery_policy = DeliveryPolicy.of(settings)
        self.sandbox: SandboxProvider | None = None
        self.stripe_js: StripeJs | None = None  # set when cards go through Stripe: the card page needs it
        self.payments = self._payments(settings)

    def _payments(self, settings: Settings) -> Payments:
        providers: list[PaymentProvider] = []
        if settings.sandbox_enabled:
            self.sandbox = SandboxProvider(
                self.db,
                self.clock,
                settings.sandbox_webhook_secret,
                settings.base_url,
                timedelta(seconds=settings.sandbox_webhook_delay_seconds),
                settings.sandbox_duplicate_webhooks,
            )
            providers.append(self.sandbox)
        if settings.card_provider == "stripe":
            from duckline.billing.providers.stripe_card import StripeCardProvider, StripeJs

            providers.append(
                StripeCardProvider(
                    settings.stripe_secret_key,
                    settings.stripe_webhook_secret,
                    settings.stripe_api_base,
                    settings.stripe_timeout_seconds,
                )
            )
            self.stripe_js = StripeJs(settings.stripe_publishable_key, settings.stripe_js_url, settings.stripe_api_base)
        if settings.alipay_provider == "alipay":
            from duckline.billing.providers.alipay import AlipayProvider

            providers.append(
                AlipayProvider(
                    settings.alipay_app_id,
                    settings.alipay_app_private_key,
                    settings.alipay_public_key,
                    settings.alipay_gateway,
                )
            )
        if settings.wechatpay_provider == "wechatpay":
            from duckline.billing.providers.wechatpay import WeChatPayProvider

            providers.append(
                WeChatPayProvider(
                    mchid=settings.wechatpay_mchid,
                    appid=settings.wechatpay_appid,
                    private_key=settings.wechatpay_private_key,
                    cert_serial_no=settings.wechatpay_cert_serial_no,
                    apiv3_key=settings.wechatpay_apiv3_key,
                    platform_public_key=settings.wechatpay_public_key,
                    platform_public_key_id=settings.wechatpay_public_key_id,
                    notify_url=f"{settings.base_url}/api/v1/webhooks/wechatpay",
                    base_url=settings.wechatpay_base_url,
                    clock=self.clock,
                )
            )
        routes = {
            PaymentMethod.SANDBOX: "sandbox",
            PaymentMethod.CARD: settings.card_provider,
            PaymentMethod.ALIPAY: settings.alipay_provider,
            PaymentMethod.WECHATPAY: settings.wechatpay_provider,
        }
        return Payments(providers, routes)

    @staticmethod
    def _sms_channel(settings: Settings) -> SmsChannel:
        if settings.sms_channel == "smpp":
            from duckline.messaging.sms.smpp import SmppSmsChannel

            return SmppSmsChannel(
                settings.smpp_host,
                settings.smpp_port,
                settings.smpp_system_id,
                settings.smpp_password,
                settings.smpp_source_addr,
            )
        if settings.sms_channel == "http":
            from duckline.messaging.sms.http_gateway import HttpGatewaySmsChannel

            return HttpGatewaySmsChannel(settings.sms_http_url, settings.sms_http_secret, settings.sms_sender)
        return LogSmsChannel(settings.log_dir / "sms-outbox.log")

    @staticmethod
    def _email_channel(settings: Settings) -> EmailChannel:
        if settings.email_channel == "smtp":
            from duckline.messaging.email.smtp import SmtpEmailChannel

            return SmtpEmailChannel(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_security,
                settings.smtp_username,
                settings.smtp_password,
                settings.smtp_sender,
            )
        from duckline.messaging.email.log import LogEmailChannel

        return LogEmailChannel(settings.log_dir / "email-outbox.log")

    def deliver_messages(self) -> int:
        return deliver_due(self.db, self.sms, self.email, self.clock, policy=self.delivery_policy)

    def check_schema(self) -> None:
        ensure_migrated(self.db.engine)

    @contextmanager
    def unit_of_work(self, *, wait_for_disk: bool = True) -> Iterator[UnitOfWork]:
        """One transaction; queued messages leave only after it has committed. `wait_for_disk`:
        see Database.transaction."""
        with self.db.transaction(wait_for_disk=wait_for_disk) as session:
            uow = UnitOfWork(session, self.settings, self.clock, self.protector, self.secrets, self.passwords)
            yield uow
        if uow.queued_notifications and self.settings.deliver_after_commit:
            self.deliver_messages()

    @contextmanager
    def reads(self) -> Iterator[UnitOfWork]:
        """For lookups of one statement each (a request's caller): see Database.reads. They must
        write nothing."""
        with self.db.reads() as session:
            yield UnitOfWork(session, self.settings, self.clock, self.protector, self.secrets, self.passwords)

    def close(self) -> None:
        if self.email is not None:
            self.email.close()
        self.db.dispose()
