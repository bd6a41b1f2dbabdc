"""End to end over a real HTTP server on loopback: sign up, get the eSIM QR, read balances."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
import zxingcpp
from PIL import Image

from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.runtime import Runtime
from tests.factories import PASSWORD, PNG, hkid, last_code, numbers, plan_input, registration_form, staff
from tests.live_server import serve


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    with serve(runtime) as url:
        yield url


def test_sign_up_to_balances_over_http(server: str, runtime: Runtime) -> None:
    numbers(runtime, 3)
    admin, admin_headers = staff(runtime, Role.ADMIN)
    with runtime.unit_of_work() as uow:
        catalog.create_plan(uow, admin, plan_input("starter"))
    phone = "+85261000042"
    with httpx.Client(base_url=server, timeout=10) as http:
        assert http.get("/api/v1/health").json()["status"] == "ok"
        openapi = http.get("/api/v1/openapi.json").json()
        assert "/api/v1/usage/batches" in openapi["paths"]

        created = http.post(
            "/api/v1/registrations",
            data=registration_form(phone, hkid(42)),
            files={"document_image": ("id.png", PNG, "image/png")},
        )
        assert created.status_code == 201, created.text
        verified = http.post("/api/v1/registrations/verify", json={"phone": phone, "code": last_code(runtime, phone)})
        assert verified.status_code == 200, verified.text
        line = verified.json()["line"]

        login = http.post("/api/v1/auth/login", json={"phone": phone, "password": PASSWORD})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie

        esim = http.get(f"/api/v1/lines/{line['id']}/esim").json()
        png = http.get(f"/api/v1/lines/{line['id']}/esim/qr.png")
        assert png.headers["content-type"] == "image/png"
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
        assert [code.text for code in decoded] == [esim["activation_code"]]
        assert esim["activation_code"].startswith("LPA:1$")

        activated = http.post(
            f"/api/v1/lines/{line['id']}/activate", json={"plan_code": "starter"}, headers=admin_headers
        )
        assert activated.status_code == 200, activated.text
        status = http.get(f"/api/v1/lines/{line['id']}/status").json()
        assert status["line"]["status"] == "active"
        assert {(a["unit"], a["remaining"]) for a in status["allowances"]} == {
            ("voice_seconds", 6000),
            ("sms", 100),
            ("data_bytes", 10_000_000),
        }
        assert http.get("/api/v1/nothing-here").json()["error"]["code"] == "not_found"
