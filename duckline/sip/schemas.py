"""The SIP API's response bodies: never a hash, and the password only in a reset's answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from duckline.sip.flows import SipDetails, SipReset


class SipAccountOut(BaseModel):
    line_id: int
    username: str = Field(description="the SIP user: the number in E.164 digits without the +")
    domain: str = Field(description="the SIP domain (digest realm)")
    server: str = Field(description="where the phone registers, host:port")
    password_changed_at: datetime

    @classmethod
    def of(cls, found: SipDetails) -> SipAccountOut:
        return cls(
            line_id=found.line.id,
            username=found.username,
            domain=found.domain,
            server=found.server,
            password_changed_at=found.password_changed_at,
        )


class SipPasswordOut(SipAccountOut):
    password: str = Field(description="the new password, shown this once: Duckline does not keep it")
    provisioning_uri: str = Field(description="sip:username:password@domain, for a softphone's QR scanner")

    @classmethod
    def of_reset(cls, reset: SipReset) -> SipPasswordOut:
        return cls(
            **SipAccountOut.of(reset.details).model_dump(),
            password=reset.password,
            provisioning_uri=reset.provisioning_uri,
        )
