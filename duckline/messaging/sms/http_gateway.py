"""Send SMS through an HTTP gateway that takes signed JSON.

POST {"to", "from", "text", "reference"} as UTF-8 JSON with two headers:
    Duckline-Timestamp: <unix seconds>
    Duckline-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
where <body> is the exact octets of the request body. The gateway should check the signature, refuse a
timestamp far from its clock (replays), and may use "reference" to drop duplicates: every attempt at one
message carries the same reference (a worker that died after sending, before recording it, sends again).

A 2xx answer is accepted: the gateway's "id" from its JSON answer (else our reference) is returned. A 4xx
other than 408 and 429 is a refusal retrying cannot fix (PermanentFailure); 5xx, 408, 429, redirects and
network errors raise to be retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid

import httpx

from duckline.messaging.sms import PermanentFailure

log = logging.getLogger("duckline.sms")

TIMESTAMP_HEADER = "Duckline-Timestamp"
SIGNATURE_HEADER = "Duckline-Signature"
_RETRYABLE_4XX = frozenset({408, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The Duckline-Signature value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


class HttpGatewaySmsChannel:
    name = "http"

    def __init__(
        self, url: str, secret: str, sender: str, timeout: float = 10.0, client: httpx.Client | None = None
    ) -> None:
        if not url:
            raise ValueError("the SMS gateway URL is not set")
        if not secret:
            raise ValueError("the SMS gateway secret is not set")
        self.url = url
        self.secret = secret
        self.sender = sender
        self.timeout = timeout
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def send(self, to: str, body: str, reference: str | None = None) -> str:
        reference = reference or f"dl-{uuid.uuid4().hex}"
        payload = {"to": to, "from": self.sender, "text": body, "reference": reference}
        content = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, content),
        }
        response = self._client.post(self.url, content=content, headers=headers, timeout=self.timeout)
        status = response.status_code
        if 400 <= status < 500 and status not in _RETRYABLE_4XX:
            raise PermanentFailure(f"SMS gateway refused the message: HTTP {status} {response.text[:200]}")
        response.raise_for_status()  # 5xx, 408, 429 and redirects: retried
        gateway_id = _gateway_id(response)
        log.info("SMS to %s sent through the gateway: %s", to, gateway_id or reference)
        return gateway_id or reference


def _gateway_id(response: httpx.Response) -> str | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    if isinstance(answer, dict) and isinstance(answer.get("id"), str | int) and str(answer["id"]):
        return str(answer["id"])
    return None
