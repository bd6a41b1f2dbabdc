"""The registration pages under the product's own code limits, in 简体中文, as the issue's new
subscriber met them (issue 10, item 13): slips in the form cost nothing, a household registers two
people from one address, and a refusal says how long to wait (on the page and in Retry-After)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.runtime import Runtime
from duckline.web.app import create_app
from tests.accounts.test_code_limits import MINUTE_AND_A_BIT, PRODUCT
from tests.factories import hk_mobile, hkid, last_code, numbers
from tests.lines.test_lines_pages import field, field_error, identity, register_form, text

CHINESE = {"Accept-Language": "zh-CN"}


@pytest.fixture
def product_runtime(settings: Settings, clock: FrozenClock) -> Iterator[Runtime]:
    runtime = Runtime(settings.model_copy(update=PRODUCT), clock=clock)
    yield runtime
    runtime.close()


def browser(runtime: Runtime) -> TestClient:
    """A browser of its own (cookies), from the same address as every other one here."""
    return TestClient(create_app(runtime=runtime), base_url="http://127.0.0.1")


def verify(client: TestClient, runtime: Runtime, phone: str) -> Any:
    page = client.get("/register/verify", params={"phone": phone}, headers=CHINESE)
    return client.post(
        "/register/verify",
        data={"phone": phone, "code": last_code(runtime, phone), "csrf_token": field(page.text, "csrf_token")},
        headers=CHINESE,
        follow_redirects=False,
    )


def resend(client: TestClient, phone: str) -> Any:
    page = client.get("/register/verify", params={"phone": phone}, headers=CHINESE)
    data = {"phone": phone, "action": "resend", "csrf_token": field(page.text, "csrf_token")}
    return client.post("/register/verify", data=data, headers=CHINESE)


def test_slips_then_two_registrations_from_one_household(product_runtime: Runtime) -> None:
    runtime = product_runtime
    numbers(runtime, 2)
    with browser(runtime) as mother:
        for slip in ({"document_number": "A123456(4)"}, {"document_number": "A1234"}, {"birth_date": ""}) * 2:
            refused = register_form(mother, identity(1, **slip), headers=CHINESE)
            assert refused.status_code == 422, text(refused.text)
        assert field_error(refused.text, "birth_date") == "出生日期无效。"
        registered = register_form(mother, identity(1), headers=CHINESE)
        assert registered.status_code == 303, text(registered.text)
        assert verify(mother, runtime, hk_mobile(1)).status_code == 303

    with browser(runtime) as son:
        registered = register_form(son, identity(2, name_en="CHAN Siu Ming", name_zh="陳小明"), headers=CHINESE)
        assert registered.status_code == 303, text(registered.text)
        assert verify(son, runtime, hk_mobile(2)).status_code == 303


def test_the_sixth_code_in_an_hour_is_refused_saying_when(product_runtime: Runtime, clock: FrozenClock) -> None:
    runtime = product_runtime
    numbers(runtime, 1)
    phone = hk_mobile(3)
    with browser(runtime) as client:
        assert register_form(client, identity(3, document_number=hkid(3)), headers=CHINESE).status_code == 303
        for _ in range(4):
            clock.advance(MINUTE_AND_A_BIT)
            assert resend(client, phone).status_code == 200
        clock.advance(MINUTE_AND_A_BIT)
        refused = resend(client, phone)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == str(3600 - 5 * 61)
        assert "发送到该号码或邮箱的验证码次数过多，请在55分钟后再试。" in text(refused.text)
        # The last code sent still opens the line.
        assert verify(client, runtime, phone).status_code == 303
