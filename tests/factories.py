"""Build state through the same services and endpoints the app uses."""

from __future__ import annotations

import re
import time
from datetime import date
from typing import Any

from fastapi.testclient import TestClient
from stdnum.cn import ric

from duckline.accounts import service as accounts
from duckline.accounts.identity import _hkid_check_digit
from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.catalog.rules import Allowance, PlanKind, Unit, Validity, Zone
from duckline.core.clock import FrozenClock
from duckline.core.money import Money
from duckline.runtime import Runtime

PASSWORD = "correct horse battery"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def hkid(serial: int, prefix: str = "A") -> str:
    digits = f"{serial:06d}"
    return f"{prefix}{digits}({_hkid_check_digit(prefix, digits)})"


def cn_resident_id(birth: date, serial: int = 123) -> str:
    body = f"110105{birth:%Y%m%d}{serial:03d}"
    return body + ric.calc_check_digit(body)


def hk_mobile(n: int) -> str:
    return f"+8526{1_000_000 + n:07d}"


def registration_form(phone: str, document_number: str, **overrides: Any) -> dict[str, Any]:
    form = {
        "phone": phone,
        "password": PASSWORD,
        "document_type": "hkid",
        "document_number": document_number,
        "name_en": "CHAN Tai Man",
        "name_zh": "陳大文",
        "birth_date": "1990-05-17",
    }
    form.update(overrides)
    return form


def last_emailed_code(runtime: Runtime, address: str) -> str:
    """The code in the last email the log channel wrote to `address`, as its owner reads it (the stored
    message keeps no code once sent). Entries are a tab-separated header line, then the text indented."""
    path = runtime.settings.log_dir / "email-outbox.log"
    code, recipient = None, None
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        if not line.startswith("    "):
            recipient = line.split("\t")[1]
        elif recipient == address and (found := re.search(r"(?<!\d)\d{6}(?!\d)", line)):
            code = found.group()
    assert code, f"no code emailed to {address}"
    return code


def last_code(runtime: Runtime, phone: str) -> str:
    """The verification code in the last SMS with a code the log channel wrote for `phone` (codes go
    before other messages queued with them, so a notice may come after it). Under concurrency
    another thread's worker round may be the one sending it: deliver and wait a little."""
    path = runtime.settings.log_dir / "sms-outbox.log"
    deadline = time.monotonic() + 10
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        for line in reversed(lines):
            _, to, _, body = line.split("\t", 3)
            found = re.search(r"(?<!\d)\d{6}(?!\d)", body) if to == phone else None
            if found:
                return found.group()
        if time.monotonic() > deadline:
            raise AssertionError(f"no SMS with a code to {phone}")
        runtime.deliver_messages()
        time.sleep(0.05)


def register(
    client: TestClient,
    phone: str,
    document_number: str,
    image: bytes = PNG,
    headers: dict[str, str] | None = None,
    **overrides: Any,
) -> Any:
    return client.post(
        "/api/v1/registrations",
        data=registration_form(phone, document_number, **overrides),
        files={"document_image": ("id.png", image, "image/png")},
        headers=headers or {},
    )


def register_and_verify(client: TestClient, runtime: Runtime, n: int) -> dict[str, Any]:
    """A verified subscriber with a pending line; returns the verify response and a bearer token."""
    phone = hk_mobile(n)
    response = register(client, phone, hkid(n))
    assert response.status_code == 201, response.text
    verified = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": last_code(runtime, phone)})
    assert verified.status_code == 200, verified.text
    token = client.post("/api/v1/auth/tokens", json={"phone": phone, "password": PASSWORD}).json()["token"]
    return {**verified.json(), "phone": phone, "headers": {"Authorization": f"Bearer {token}"}}


def staff(runtime: Runtime, role: Role, n: int = 1) -> tuple[Account, dict[str, str]]:
    with runtime.unit_of_work() as uow:
        account = accounts.create_staff(uow, f"+8525100{n:04d}", PASSWORD, role)
        token = accounts.issue_token(uow, account, "test", None)
    return account, {"Authorization": f"Bearer {token}"}


def plan_input(
    code: str = "test-plan",
    kind: PlanKind = PlanKind.PLAN,
    price: int = 8800,
    validity: Validity | None = None,
    allowances: list[Allowance] | None = None,
) -> catalog.PlanInput:
    texts = {"en": f"Plan {code}", "zh_Hant": f"計劃 {code}", "zh_Hans": f"套餐 {code}"}
    return catalog.PlanInput(
        code=code,
        kind=kind,
        names=texts,
        descriptions=texts,
        price=Money(price, "HKD"),
        validity=validity or Validity(days=30),
        allowances=allowances
        or [
            Allowance(Unit.VOICE_SECONDS, Zone.HK, 6000),
            Allowance(Unit.SMS, Zone.HK, 100),
            Allowance(Unit.DATA_BYTES, Zone.HK, 10_000_000),
        ],
    )


def numbers(runtime: Runtime, count: int, start: int = 0) -> list[str]:
    from duckline.lines import numbers as pool

    msisdns = [f"+8525170{start + i:04d}" for i in range(count)]
    with runtime.unit_of_work() as uow:
        pool.import_numbers(uow, msisdns)
    return msisdns


def sandbox_post(client: TestClient) -> Any:
    """How the sandbox provider's webhook sender reaches the app under test."""
    from urllib.parse import urlsplit

    def post(url: str, body: bytes, headers: dict[str, str]) -> int:
        return client.post(urlsplit(url).path, content=body, headers=headers).status_code

    return post


def idem() -> dict[str, str]:
    import uuid

    return {"Idempotency-Key": uuid.uuid4().hex}


def pay_on_sandbox(
    client: TestClient, order: dict[str, Any], card: str = "4242424242424242", save: bool = False
) -> Any:
    """The payer fills in the sandbox's hosted page (the provider's side)."""
    from urllib.parse import urlsplit

    url = order["payments"][-1]["next_action"]["url"]
    return client.post(
        urlsplit(url).path, data={"card_number": card, **({"save": "1"} if save else {})}, follow_redirects=False
    )


def place_order(client: TestClient, subscriber: dict[str, Any], plan: str = "monthly", **extra: Any) -> Any:
    """POST /api/v1/orders for the subscriber's first line, with a fresh Idempotency-Key."""
    body = {"line_id": subscriber["line"]["id"], "plan_code": plan, "payment_method": "card", **extra}
    return client.post("/api/v1/orders", json=body, headers={**subscriber["headers"], **idem()})


def deliver(runtime: Runtime, client: TestClient, clock: FrozenClock) -> int:
    """Let the sandbox's webhook delay pass and post every webhook that is due."""
    from datetime import timedelta

    clock.advance(timedelta(seconds=5))
    assert runtime.sandbox is not None
    return runtime.sandbox.deliver_due(sandbox_post(client))


def buy(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    subscriber: dict[str, Any],
    plan: str = "monthly",
    **extra: Any,
) -> dict[str, Any]:
    """Order, pay on the sandbox page with a good card, deliver the webhooks; the final order."""
    created = place_order(client, subscriber, plan, **extra)
    assert created.status_code == 201, created.text
    if created.json()["payments"]:
        assert pay_on_sandbox(client, created.json()).status_code == 303
        deliver(runtime, client, clock)
    final = client.get(f"/api/v1/orders/{created.json()['id']}", headers=subscriber["headers"])
    assert final.json()["status"] == "fulfilled", final.text
    return dict(final.json())
