"""All settings in one typed object, read from DUCKLINE_* environment variables or a .env file."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A development-only key so the embedded demo runs with no set-up; production refuses it.
DEV_SECRET = "duckline-development-secret-do-not-use-in-production"  # noqa: S105


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
    base_url: str = "http://127.0.0.1:8000"

    default_region: str = "HK"
    allowed_regions: tuple[str, ...] = ("HK", "CN", "MO")
    default_currency: str = "HKD"
    display_timezone: str = "Asia/Hong_Kong"

    max_lines_per_identity: int = 10
    min_age_without_guardian: int = 16
    kyc_auto_approve: bool = True
    document_max_bytes: int = 5 * 1024 * 1024

    otp_ttl_seconds: int = 300
    otp_max_attempts: int = 5
    otp_resend_interval_seconds: int = 60
    otp_max_sends_per_hour: int = 5
    login_rate_limit: str = "10/minute"
    otp_rate_limit: str = "5/minute"

    session_max_age_seconds: int = 7 * 24 * 3600
    api_token_ttl_days: int = 30

    usage_alert_thresholds: tuple[int, ...] = (75, 90, 100)
    expiry_warning_days: tuple[int, ...] = (7, 3, 1)

    smdp_address: str = "smdp.duckline.example"
    iccid_prefix: str = "8985201"

    sms_channel: Literal["log"] = "log"
    log_dir: Path = Path("var")

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            for name in ("secret_key", "data_key"):
                value = getattr(self, name)
                if value == DEV_SECRET or len(value) < 32:
                    raise ValueError(
                        f"DUCKLINE_{name.upper()} must be set to a random value of at least 32 characters in production"
                    )
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    demo_mode: bool = Field(default=False, description="expose the demo SMS outbox over the API")
