"""What receipts, credit notes, the console and the portal say about a payment and its subscriber:
the method actually paid with (a wallet by name, a card by brand and last four), the line's number
on a credit note, and dates of birth formatted for the reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from duckline.accounts.phone import display
from duckline.core.clock import FrozenClock
from duckline.runtime import Runtime
from tests.billing.test_receipt_pdf import poppler, squash
from tests.factories import buy, deliver, pay_on_sandbox, place_order
from tests.staff import test_console
from tests.staff.test_console import browser, csrf, text

# A subscriber (born 1990-05-17) with a line, and staff of each role that reads payments.
world = test_console.world


def receipt_text(client: TestClient, subscriber: dict[str, Any], kind: str, tmp_path: Path) -> str:
    """The PDF of the subscriber's latest receipt (or credit note), read back by pdftotext."""
    listed = client.get("/api/v1/receipts", headers=subscriber["headers"]).json()["items"]
    receipt = next(r for r in listed if r["kind"] == kind)
    pdf = client.get(receipt["pdf"], headers=subscriber["headers"])
    assert pdf.status_code == 200, pdf.text
    path = tmp_path / f"{receipt['number']}.pdf"
    path.write_bytes(pdf.content)
    return poppler("pdftotext", "-layout", path, "-")


def pay_with_alipay(client: TestClient, runtime: Runtime, clock: FrozenClock, subscriber: dict[str, Any]) -> int:
    """Renew with Alipay through the sandbox, whose hosted page takes a test card number for any method."""
    created = place_order(client, subscriber, payment_method="alipay")
    assert created.status_code == 201, created.text
    assert pay_on_sandbox(client, created.json()).status_code == 303
    deliver(runtime, client, clock)
    final = client.get(f"/api/v1/orders/{created.json()['id']}", headers=subscriber["headers"]).json()
    assert final["status"] == "fulfilled", final
    return int(final["id"])


def switch(runtime: Runtime, page: TestClient, language: str) -> None:
    token = csrf(runtime, page)
    switched = page.post("/language", data={"language": language, "csrf_token": token, "next": "/"})
    assert switched.status_code == 200


def test_an_alipay_payment_is_named_alipay_not_a_card(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any], tmp_path: Path
) -> None:
    subscriber = world["subscriber"]
    order_id = pay_with_alipay(client, runtime, clock, subscriber)

    receipt = receipt_text(client, subscriber, "receipt", tmp_path)
    assert "Alipay" in receipt
    assert "Visa" not in receipt and "4242" not in receipt

    support = browser(client, runtime, world["phones"]["support"])
    console = text(support.get(f"/console/subscribers/{world['account_id']}").text)
    assert "Alipay" in console
    assert "VISA" not in console.upper() and "4242" not in console
    switch(runtime, support, "zh_Hans")
    assert "支付宝" in text(support.get(f"/console/subscribers/{world['account_id']}").text)

    own = browser(client, runtime, subscriber["phone"])
    switch(runtime, own, "zh_Hant")
    result = text(own.get(f"/orders/{order_id}/result").text)
    assert "支付寶" in result and "4242" not in result
    zh_receipt = client.get("/api/v1/receipts", headers=subscriber["headers"]).json()["items"][0]
    pdf = client.get(zh_receipt["pdf"], headers={**subscriber["headers"], "Accept-Language": "zh-HK"})
    (tmp_path / "zh.pdf").write_bytes(pdf.content)
    assert "支付寶" in squash(poppler("pdftotext", tmp_path / "zh.pdf", "-"))


def test_a_card_payment_still_shows_brand_and_last_four(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any], tmp_path: Path
) -> None:
    subscriber = world["subscriber"]
    order = buy(client, runtime, clock, subscriber)

    assert "Visa •••• 4242" in receipt_text(client, subscriber, "receipt", tmp_path)
    support = browser(client, runtime, world["phones"]["support"])
    assert "Visa •••• 4242" in text(support.get(f"/console/subscribers/{world['account_id']}").text)
    own = browser(client, runtime, subscriber["phone"])
    assert "Visa •••• 4242" in text(own.get(f"/orders/{order['id']}/result").text)


def test_a_credit_note_shows_the_lines_number(
    client: TestClient, runtime: Runtime, clock: FrozenClock, world: dict[str, Any], tmp_path: Path
) -> None:
    subscriber = world["subscriber"]
    order = buy(client, runtime, clock, subscriber)
    finance = browser(client, runtime, world["phones"]["finance"])
    refunded = finance.post(
        f"/console/orders/{order['id']}/refund",
        data={"csrf_token": csrf(runtime, finance), "amount": "12.34", "reason": "dropped calls"},
    )
    assert refunded.status_code == 200, refunded.text

    note = receipt_text(client, subscriber, "credit_note", tmp_path)
    assert display(subscriber["line"]["msisdn"]) in note


def test_the_console_formats_a_date_of_birth_for_the_reader(
    client: TestClient, runtime: Runtime, world: dict[str, Any]
) -> None:
    support = browser(client, runtime, world["phones"]["support"])
    switch(runtime, support, "zh_Hans")
    page = text(support.get(f"/console/subscribers/{world['account_id']}").text)
    assert "1990年5月17日" in page
    assert "1990-05-17" not in page
