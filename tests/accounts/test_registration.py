"""Registration with a real-name identity, the SMS code, and the first line with its eSIM."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from stdnum import luhn

from duckline.accounts.models import Account, DocumentImage, Guardian, Person
from duckline.core.clock import FrozenClock
from duckline.core.config import Settings
from duckline.lines.models import PoolNumber
from duckline.messaging.models import Notification
from duckline.runtime import Runtime
from tests.app_pool import pooled_app
from tests.factories import PASSWORD, PNG, cn_resident_id, hk_mobile, hkid, last_code, numbers, register


def count(runtime: Runtime, model: type) -> int:
    with runtime.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)


def test_register_verify_and_get_a_line_with_esim(client: TestClient, runtime: Runtime) -> None:
    pool = numbers(runtime, 3)
    phone = "5123 4567"  # national form: normalised to E.164
    response = register(client, phone, "A123456(3)")
    assert response.status_code == 201, response.text
    assert response.json() == {"phone": "+85251234567", "next_step": "verify_phone"}

    code = last_code(runtime, "+85251234567")
    verified = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": code})
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert body["account"]["phone_verified"] is True
    assert body["line"]["msisdn"] == pool[0]
    assert body["line"]["status"] == "pending"
    esim = body["esim"]
    assert len(esim["iccid"]) in (19, 20) and luhn.is_valid(esim["iccid"])
    assert esim["activation_code"] == f"LPA:1${esim['smdp_address']}${esim['matching_id']}"

    with runtime.unit_of_work() as uow:
        person = uow.session.scalars(select(Person)).one()
        # Stored protected: the number is neither in the row in clear nor in the mask.
        assert b"A1234563" not in person.document_cipher
        assert uow.protector.decrypt(person.document_cipher) == b"A1234563"
        assert person.document_masked == "A1******"
        assert person.line_count == 1
        image = uow.session.scalars(select(DocumentImage)).one()
        assert image.content_type == "image/png" and PNG not in image.cipher
        assert uow.protector.decrypt(image.cipher) == PNG
        account = uow.session.scalars(select(Account)).one()
        assert account.password_hash.startswith("$argon2id$")
        assert uow.session.scalar(select(PoolNumber.available).where(PoolNumber.msisdn == pool[0])) is False


def test_verification_code_is_single_use(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 2)
    phone = hk_mobile(1)
    register(client, phone, hkid(1))
    code = last_code(runtime, phone)
    assert client.post("/api/v1/registrations/verify", json={"phone": phone, "code": code}).status_code == 200
    again = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": code})
    unknown = client.post("/api/v1/registrations/verify", json={"phone": hk_mobile(99), "code": code})
    # Answered as a wrong code, as for a number nobody registered: not "already a customer".
    assert again.status_code == 422 and again.json()["error"]["code"] == "otp_invalid"
    assert again.json() == unknown.json()


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"phone": "+44 7911 123456"}, "phone_region_not_allowed", "phone"),
        ({"phone": "2123 4567"}, "phone_invalid", "phone"),  # a Hong Kong fixed line
        ({"document_number": "A123456(4)"}, "document_number_invalid", "document_number"),
        ({"document_type": "library_card"}, "document_type_unknown", "document_type"),
        ({"name_en": "", "name_zh": ""}, "name_required", "name_en"),
        ({"birth_date": "2999-01-01"}, "birth_date_invalid", "birth_date"),
        ({"password": "short"}, "password_too_weak", "password"),
        (
            {"document_type": "cn_resident_id", "document_number": "11010519491231002X", "birth_date": "1950-01-01"},
            "birth_date_invalid",
            "birth_date",
        ),
    ],
)
def test_bad_registration_is_refused_and_changes_nothing(
    client: TestClient, runtime: Runtime, overrides: dict[str, str], code: str, field: str
) -> None:
    given = dict(overrides)  # parametrize shares the dict between the two databases
    response = register(client, given.pop("phone", hk_mobile(2)), given.pop("document_number", hkid(2)), **given)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field
    assert count(runtime, Account) == 0 and count(runtime, Person) == 0


def test_document_image_must_be_an_image_of_acceptable_size(client: TestClient, runtime: Runtime) -> None:
    text_file = register(client, hk_mobile(3), hkid(3), image=b"just some text, not a scan")
    assert text_file.json()["error"]["code"] == "document_image_invalid"
    huge = register(client, hk_mobile(3), hkid(3), image=PNG + b"\0" * (runtime.settings.document_max_bytes + 1))
    assert huge.json()["error"]["code"] == "document_image_too_large"
    assert count(runtime, Account) == 0


def test_mainland_resident_with_valid_id_registers(client: TestClient, runtime: Runtime) -> None:
    response = register(
        client,
        "+86 138 0013 8000",
        "11010519491231002X",
        document_type="cn_resident_id",
        birth_date="1949-12-31",
        name_en="",
        name_zh="李娜",
    )
    assert response.status_code == 201, response.text
    assert response.json()["phone"] == "+8613800138000"


def test_under_16_needs_an_adult_who_registers_too(client: TestClient, runtime: Runtime) -> None:
    child = {"birth_date": "2015-03-01"}
    refused = register(client, hk_mobile(4), hkid(4), **child)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "guardian_required"

    minor_guardian = register(
        client,
        hk_mobile(4),
        hkid(4),
        **child,
        guardian_document_type="hkid",
        guardian_document_number=hkid(40),
        guardian_name_en="CHAN Siu Ming",
        guardian_birth_date="2010-01-01",
    )
    assert minor_guardian.json()["error"]["code"] == "guardian_not_adult"

    accepted = register(
        client,
        hk_mobile(4),
        hkid(4),
        **child,
        guardian_document_type="cn_resident_id",
        guardian_document_number=cn_resident_id(__import__("datetime").date(1980, 6, 1)),
        guardian_name_zh="陳大文",
        guardian_birth_date="1980-06-01",
    )
    assert accepted.status_code == 201, accepted.text
    with runtime.unit_of_work() as uow:
        minor = uow.session.scalars(select(Person).where(Person.guardian_id.is_not(None))).one()
        guardian = uow.session.get(Guardian, minor.guardian_id)
        assert guardian is not None and guardian.name_zh == "陳大文"
        assert uow.session.scalar(select(func.count()).select_from(Person)) == 1  # the adult is no subscriber


def test_an_adult_named_as_guardian_can_still_register_themselves(client: TestClient, runtime: Runtime) -> None:
    """Naming someone as a minor's adult takes nothing from them: not their identity's place,
    nor any of the lines their identity may hold."""
    numbers(runtime, 3)
    adult = {"document_number": hkid(41), "name_en": "CHAN Siu Ming", "birth_date": "1980-01-01"}
    as_guardian = {f"guardian_{field}": value for field, value in adult.items()} | {"guardian_document_type": "hkid"}
    for n in (42, 43):  # two children name the same adult
        child = register(client, hk_mobile(n), hkid(n), birth_date="2015-03-01", **as_guardian)
        assert child.status_code == 201, child.text
        code = last_code(runtime, hk_mobile(n))
        assert (
            client.post("/api/v1/registrations/verify", json={"phone": hk_mobile(n), "code": code}).status_code == 200
        )

    own = register(
        client, hk_mobile(41), adult["document_number"], **{k: v for k, v in adult.items() if k != "document_number"}
    )
    assert own.status_code == 201, own.text
    code = last_code(runtime, hk_mobile(41))
    verified = client.post("/api/v1/registrations/verify", json={"phone": hk_mobile(41), "code": code})
    assert verified.status_code == 200, verified.text

    with runtime.unit_of_work() as uow:
        number_hash = uow.protector.lookup_hash("hkid", hkid(41).replace("(", "").replace(")", ""))
        persons = uow.session.scalars(select(Person).where(Person.document_hash == number_hash)).all()
        assert len(persons) == 1 and persons[0].line_count == 1  # the adult's own line, counted once
        children = uow.session.scalars(select(Person).where(Person.guardian_id.is_not(None))).all()
        assert [c.line_count for c in children] == [1, 1]  # each child's line on the child's identity
        guardians = [uow.session.get(Guardian, c.guardian_id) for c in children]
        for guardian in guardians:
            assert guardian is not None and guardian.document_hash == number_hash
            # Kept as protected as the subscriber's own identity.
            assert hkid(41)[:7].encode() not in guardian.document_cipher
            assert (
                uow.protector.decrypt(guardian.document_cipher) == hkid(41).replace("(", "").replace(")", "").encode()
            )
            assert guardian.document_masked == "A0******" and guardian.name_en == "CHAN Siu Ming"


def sms_to(runtime: Runtime, phone: str) -> list[str]:
    path = runtime.settings.log_dir / "sms-outbox.log"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [body for _, to, _, body in (line.split("\t", 3) for line in lines) if to == phone]


def test_a_taken_phone_or_identity_gets_the_answer_a_new_registration_gets(
    client: TestClient, runtime: Runtime
) -> None:
    """Registration must not tell anyone who is a customer: a number or an identity document that
    already has an account is answered exactly as a new one, and the account's owner is told by
    SMS, in their language, instead of anyone being sent a code."""
    numbers(runtime, 2)
    owner = register(client, hk_mobile(5), hkid(5), preferred_language="zh_Hant", email="owner@example.com")
    assert owner.status_code == 201
    code = last_code(runtime, hk_mobile(5))
    assert client.post("/api/v1/registrations/verify", json={"phone": hk_mobile(5), "code": code}).status_code == 200
    pending = register(client, hk_mobile(8), hkid(8))  # registered, not verified yet
    assert pending.status_code == 201

    new = register(client, hk_mobile(7), hkid(7))
    same_phone = register(client, hk_mobile(5), hkid(6), password="another long password")
    same_identity = register(client, hk_mobile(6), hkid(5).replace("(", " (").lower())
    pending_phone = register(client, hk_mobile(8), hkid(9))

    answers = {"new": new, "same phone": same_phone, "same identity": same_identity, "pending phone": pending_phone}
    for name, answer in answers.items():
        assert answer.status_code == 201, (name, answer.text)
        body = answer.json()
        assert body == {**new.json(), "phone": body["phone"]}, name  # nothing else differs: no enumeration
        assert set(answer.headers) == set(new.headers), name
    assert new.json() == {"phone": hk_mobile(7), "next_step": "verify_phone"}
    assert same_identity.json()["phone"] == hk_mobile(6)

    # The owners hear of it, in their language, by SMS and email; nobody else gets anything.
    with runtime.unit_of_work() as uow:
        told = uow.session.scalars(select(Notification).where(Notification.template.like("registration_attempt%")))
        by = sorted((n.template, n.channel, n.recipient) for n in told)
    assert by == [
        ("registration_attempt_identity", "email", "owner@example.com"),
        ("registration_attempt_identity", "sms", hk_mobile(5)),
        ("registration_attempt_phone", "email", "owner@example.com"),
        ("registration_attempt_phone", "sms", hk_mobile(5)),
        ("registration_attempt_phone", "sms", hk_mobile(8)),
    ]
    owner_sms = sms_to(runtime, hk_mobile(5))
    assert any("登記" in body and "手機號碼" in body for body in owner_sms[1:]), owner_sms
    assert any("A0******" in body and "證件" in body for body in owner_sms[1:]), owner_sms
    assert sms_to(runtime, hk_mobile(6)) == []  # the identity's impostor gets no code
    assert len(sms_to(runtime, hk_mobile(8))) == 2  # its own code, then the notice: no new code

    # And the verify step cannot succeed for them: no account, or not theirs.
    unknown = client.post("/api/v1/registrations/verify", json={"phone": hk_mobile(99), "code": "123456"})
    for phone in (hk_mobile(5), hk_mobile(6), hk_mobile(8)):
        tried = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": "123456"})
        assert tried.status_code == unknown.status_code == 422 and tried.json() == unknown.json(), phone
    for phone in (hk_mobile(5), hk_mobile(6), hk_mobile(99)):  # a customer, the impostor, nobody
        resent = client.post("/api/v1/registrations/resend", json={"phone": phone})
        assert resent.status_code == 202 and resent.json() == {"status": "sent"}, phone
    assert sms_to(runtime, hk_mobile(6)) == []
    with runtime.unit_of_work() as uow:
        assert sorted(uow.session.scalars(select(Account.phone))) == [hk_mobile(n) for n in (5, 7, 8)]
    assert client.post("/api/v1/auth/tokens", json={"phone": hk_mobile(5), "password": PASSWORD}).status_code == 201


def test_wrong_codes_are_counted_and_lock_the_code(client: TestClient, runtime: Runtime) -> None:
    numbers(runtime, 1)
    phone = hk_mobile(7)
    register(client, phone, hkid(7))
    code = last_code(runtime, phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(runtime.settings.otp_max_attempts - 1):
        response = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": wrong})
        assert response.json()["error"]["code"] == "otp_invalid"
    last = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": wrong})
    assert last.status_code == 429 and last.json()["error"]["code"] == "otp_too_many_attempts"
    # Even the right code no longer works: a new one must be requested.
    right = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": code})
    assert right.json()["error"]["code"] == "otp_too_many_attempts"


def test_codes_expire_and_resends_are_limited(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    numbers(runtime, 1)
    phone = hk_mobile(8)
    register(client, phone, hkid(8))
    first = last_code(runtime, phone)
    too_soon = client.post("/api/v1/registrations/resend", json={"phone": phone})
    assert too_soon.status_code == 429 and too_soon.json()["error"]["code"] == "otp_resend_too_soon"

    clock.advance(timedelta(seconds=runtime.settings.otp_ttl_seconds + 1))
    expired = client.post("/api/v1/registrations/verify", json={"phone": phone, "code": first})
    assert expired.json()["error"]["code"] == "otp_expired"

    assert client.post("/api/v1/registrations/resend", json={"phone": phone}).status_code == 202
    fresh = last_code(runtime, phone)
    assert client.post("/api/v1/registrations/verify", json={"phone": phone, "code": fresh}).status_code == 200


def test_errors_come_in_the_callers_language(client: TestClient, runtime: Runtime) -> None:
    response = register(client, "+44 7911 123456", hkid(9), headers={"Accept-Language": "zh-HK,zh;q=0.9"})
    message = response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "phone_region_not_allowed"
    assert message != "Only Hong Kong, Mainland China and Macau mobile numbers can register."
    assert "香港" in message
    simplified = register(client, "+44 7911 123456", hkid(9), headers={"Accept-Language": "zh-CN"})
    assert "香港" in simplified.json()["error"]["message"]
    assert simplified.json()["error"]["message"] != message or "只" in message


def test_verification_sms_is_in_the_subscribers_language(client: TestClient, runtime: Runtime) -> None:
    register(client, hk_mobile(10), hkid(10), preferred_language="zh_Hant")
    log = (runtime.settings.log_dir / "sms-outbox.log").read_text(encoding="utf-8")
    assert "驗證碼" in log


def test_the_demo_outbox_shows_codes_as_sent_though_the_stored_messages_keep_none(
    settings: Settings, clock: FrozenClock
) -> None:
    runtime = Runtime(
        settings.model_copy(update={"environment": "development", "worker_in_process": False}), clock=clock
    )
    with pooled_app(runtime) as app, TestClient(app, base_url="http://127.0.0.1") as client:
        numbers(runtime, 1)
        phone = hk_mobile(11)
        assert register(client, phone, hkid(11)).status_code == 201
        code = last_code(runtime, phone)
        outbox = client.get("/api/v1/demo/outbox").json()
    with runtime.unit_of_work() as uow:
        stored = uow.session.scalars(select(Notification)).one()
    runtime.close()
    assert outbox[0]["to"] == phone and code in outbox[0]["body"]
    assert stored.status == "sent" and code not in stored.body


def test_a_missing_document_image_has_its_own_code(client: TestClient, runtime: Runtime) -> None:
    missing = register(client, hk_mobile(3), hkid(3), image=b"", headers={"Accept-Language": "zh-CN"})

    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "document_image_required"
    assert missing.json()["error"]["field"] == "document_image"
    assert missing.json()["error"]["message"] == "请附上身份证明文件的照片或扫描件。"
    assert count(runtime, Account) == 0
