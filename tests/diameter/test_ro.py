"""Ro (IMS online charging) over TCP on both databases, as Kamailio's ims_charging drives it: one
MSCC (Rating-Group 100, Service-Identifier 1000) with CC-Time, IMS-Information naming the number
called, Service-Context-Id with the operator's labels in front. Calls are charged in the zone of
the number called, in the plan's increments over the whole call; SMS events once; emergency
numbers always answered and never charged."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from diameter.message import constants
from diameter.message.avp.grouped import (
    ImsInformation,
    RecipientAddress,
    RecipientInfo,
    RequestedServiceUnit,
    ServiceInformation,
    SmsInformation,
    SubscriptionId,
    UsedServiceUnit,
)
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from duckline.accounts.roles import Role
from duckline.catalog import service as catalog
from duckline.diameter.server import GyServer
from duckline.lines.models import Line
from duckline.lines.states import LineStatus
from duckline.runtime import Runtime
from duckline.usage import balances
from duckline.usage.models import CreditReservation, CreditSession, LedgerEntry, UsageRecord
from tests.diameter.conftest import PGW
from tests.diameter.test_foreign import NODE_CLIENT, node_diameter_missing, pdml_avps
from tests.diameter.test_mscc import usage_rows
from tests.diameter.wire import EVENT, INITIAL, TERMINATE, UPDATE, RawPeer, tshark_packets, value_of
from tests.factories import staff
from tests.usage.test_usage import active_line, remaining

IMS = "ext.01.001.8.32260@3gpp.org"  # ims_charging's default labels in front of 32260@3gpp.org
SMS = "32274@3gpp.org"
VOICE_GROUP, VOICE_SERVICE = 100, 1000  # ims_charging's voice_rating_group, voice_service_identifier
RESULT = constants.AVP_RESULT_CODE
ORIGINATING, S_CSCF = 0, 0  # Role-Of-Node, Node-Functionality
SERVICE_INFORMATION, IMS_INFORMATION = constants.AVP_TGPP_SERVICE_INFORMATION, constants.AVP_TGPP_IMS_INFORMATION
CALLING_PARTY_ADDRESS, CALLED_PARTY_ADDRESS = (
    constants.AVP_TGPP_CALLING_PARTY_ADDRESS,
    constants.AVP_TGPP_CALLED_PARTY_ADDRESS,
)
ROLE_OF_NODE, NODE_FUNCTIONALITY = constants.AVP_TGPP_ROLE_OF_NODE, constants.AVP_TGPP_NODE_FUNCTIONALITY
TEXTS = {"en": "Ro plan", "zh_Hant": "Ro 計劃", "zh_Hans": "Ro 套餐"}


def ims_plan(client: TestClient, runtime: Runtime, code: str, increments: tuple[int, int], **amounts: int) -> None:
    """A plan made through the staff API with these voice increments and allowances, named
    unit_zone (voice_seconds_HK=6000)."""
    _, admin = staff(runtime, Role.ADMIN, 70)
    allowances = []
    for key, amount in amounts.items():
        unit, _, zone = key.rpartition("_")
        allowances.append({"unit": unit, "zone": zone, "amount": amount})
    body = {
        "code": code,
        "names": TEXTS,
        "descriptions": TEXTS,
        "price": {"amount": 8800, "currency": "HKD"},
        "validity_days": 30,
        "voice_initial_increment": increments[0],
        "voice_subsequent_increment": increments[1],
        "allowances": allowances,
    }
    made = client.post("/api/v1/plans", json=body, headers=admin)
    assert made.status_code == 201, made.text
    assert (made.json()["voice_initial_increment"], made.json()["voice_subsequent_increment"]) == increments


def ro_ccr(
    peer: RawPeer,
    session: str,
    number: int,
    request_type: int,
    msisdn: str | None,
    called: str | None,
    *,
    asked: int | None = None,
    used: int | None = None,
    emergency: bool = False,
) -> Any:
    """A Ro request as ims_charging builds it: Subscription-Id at the top and in
    Service-Information, Multiple-Services-Indicator, one MSCC in CC-Time, IMS-Information."""
    request = peer.ccr(session, number, request_type, msisdn)
    request.service_context_id = IMS
    request.multiple_services_indicator = 1
    request.multiple_services_credit_control = []
    request.add_multiple_services_credit_control(
        requested_service_unit=RequestedServiceUnit(cc_time=asked) if asked is not None else None,
        used_service_unit=UsedServiceUnit(cc_time=used) if used is not None else None,
        service_identifier=[VOICE_SERVICE],
        rating_group=VOICE_GROUP,
    )
    ims = ImsInformation(
        role_of_node=ORIGINATING,
        node_functionality=S_CSCF,
        user_session_id=f"call-{session}",
        calling_party_address=[f"tel:{msisdn}"] if msisdn else [],
        called_party_address=called,
    )
    if emergency:
        ims.ims_emergency_indicator = 1
    subscribers = [SubscriptionId(constants.E_SUBSCRIPTION_ID_TYPE_END_USER_E164, msisdn)] if msisdn else []
    request.service_information = ServiceInformation(subscription_id=subscribers, ims_information=ims)
    return request


def mscc(answer: Any) -> list[tuple[int, int, list[int], int | None, int | None]]:
    """(Rating-Group, Result-Code, Service-Identifiers, granted CC-Time, Validity-Time) of each MSCC."""
    found = []
    for block in answer.message.multiple_services_credit_control:
        gsu = block.granted_service_unit
        granted = None if gsu is None else gsu.cc_time
        found.append((block.rating_group, block.result_code, block.service_identifier, granted, block.validity_time))
    return found


def test_a_call_to_hong_kong_is_charged_per_started_minute_from_hong_kong_minutes(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    ims_plan(client, runtime, "ro-minute", (60, 60), voice_seconds_HK=6000, sms_HK=100)
    subscriber = active_line(client, runtime, plan_code="ro-minute")
    msisdn, validity = subscriber["line"]["msisdn"], runtime.settings.quota_validity_seconds
    peer = connect(PGW)
    called = "tel:+85291234567"
    block = (VOICE_GROUP, 2001, [VOICE_SERVICE], 60, validity)

    opened = peer.ask(ro_ccr(peer, "call;1", 0, INITIAL, msisdn, called, asked=30))
    # What ims_charging reads: Result-Code at the top, the grant in whole minutes in the MSCC.
    assert value_of(opened, RESULT) == 2001 and mscc(opened) == [block]
    updated = peer.ask(ro_ccr(peer, "call;1", 1, UPDATE, msisdn, called, asked=30, used=60))
    assert value_of(updated, RESULT) == 2001 and mscc(updated) == [block]
    ended = peer.ask(ro_ccr(peer, "call;1", 2, TERMINATE, msisdn, called, used=1))
    assert value_of(ended, RESULT) == 2001
    assert mscc(ended) == [(VOICE_GROUP, 2001, [VOICE_SERVICE], None, None)]

    # 61 seconds: two started minutes.
    assert usage_rows(runtime) == [("call;1#1/100", 60), ("call;1#2/100", 60)]
    assert remaining(client, subscriber)[("voice_seconds", "HK")] == 6000 - 120
    with runtime.unit_of_work() as uow:
        session = uow.session.scalars(select(CreditSession)).one()
        assert (session.zone, session.seconds_used, session.emergency, session.reserved) == ("HK", 61, False, 0)


def test_a_minute_plan_charges_a_call_reported_mid_minute_as_one_call(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    ims_plan(client, runtime, "ro-minute", (60, 60), voice_seconds_HK=6000)
    subscriber = active_line(client, runtime, plan_code="ro-minute")
    msisdn = subscriber["line"]["msisdn"]
    peer = connect(PGW)
    called = "sip:91234567@ims.duckline.example;user=phone"  # dialled without +852

    peer.ask(ro_ccr(peer, "call;2", 0, INITIAL, msisdn, called, asked=120))
    # 30 s then 30 s more: still the first minute; then 1 s into the second.
    peer.ask(ro_ccr(peer, "call;2", 1, UPDATE, msisdn, called, asked=120, used=30))
    peer.ask(ro_ccr(peer, "call;2", 2, UPDATE, msisdn, called, asked=120, used=30))
    peer.ask(ro_ccr(peer, "call;2", 3, TERMINATE, msisdn, called, used=1))

    assert usage_rows(runtime) == [("call;2#1/100", 60), ("call;2#2/100", 0), ("call;2#3/100", 60)]
    assert remaining(client, subscriber)[("voice_seconds", "HK")] == 6000 - 120


def test_a_per_second_plan_charges_every_second(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    ims_plan(client, runtime, "ro-second", (1, 1), voice_seconds_HK=6000)
    subscriber = active_line(client, runtime, plan_code="ro-second")
    msisdn, validity = subscriber["line"]["msisdn"], runtime.settings.quota_validity_seconds
    peer = connect(PGW)
    called = "tel:+85291234567"

    opened = peer.ask(ro_ccr(peer, "call;3", 0, INITIAL, msisdn, called, asked=30))
    assert mscc(opened) == [(VOICE_GROUP, 2001, [VOICE_SERVICE], 30, validity)]
    peer.ask(ro_ccr(peer, "call;3", 1, TERMINATE, msisdn, called, used=61))

    assert usage_rows(runtime) == [("call;3#1/100", 61)]
    assert remaining(client, subscriber)[("voice_seconds", "HK")] == 6000 - 61


def test_a_call_to_the_mainland_draws_on_mainland_minutes(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    ims_plan(client, runtime, "ro-minute", (60, 60), voice_seconds_HK=6000, voice_seconds_CN=600)
    subscriber = active_line(client, runtime, plan_code="ro-minute")
    msisdn = subscriber["line"]["msisdn"]
    peer = connect(PGW)
    called = "sip:+8613800138000@ims.duckline.example;user=phone"
    # The subscriber named only by a SIP URI inside Service-Information, as an IMS core may.
    request = ro_ccr(peer, "call;4", 0, INITIAL, None, called, asked=30)
    request.service_information.subscription_id = [
        SubscriptionId(constants.E_SUBSCRIPTION_ID_TYPE_END_USER_SIP_URI, f"sip:{msisdn}@ims.duckline.example")
    ]

    assert value_of(peer.ask(request), RESULT) == 2001
    peer.ask(ro_ccr(peer, "call;4", 1, TERMINATE, None, called, used=90))

    left = remaining(client, subscriber)
    assert (left[("voice_seconds", "CN")], left[("voice_seconds", "HK")]) == (600 - 120, 6000)


def test_an_international_call_without_an_allowance_is_refused_and_one_with_is_charged(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    ims_plan(client, runtime, "ro-minute", (60, 60), voice_seconds_HK=6000)
    subscriber = active_line(client, runtime, plan_code="ro-minute")
    msisdn = subscriber["line"]["msisdn"]
    peer = connect(PGW)

    refused = peer.ask(ro_ccr(peer, "call;5", 0, INITIAL, msisdn, "tel:+14155550100", asked=30))

    assert value_of(refused, RESULT) == 4012
    assert mscc(refused) == [(VOICE_GROUP, 4012, [VOICE_SERVICE], None, None)]
    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(CreditReservation)) == 0

    # An add-on of international minutes (the zone the console and the API offer) lets it through.
    _, admin = staff(runtime, Role.ADMIN, 71)
    pack = {
        "code": "intl-pack",
        "kind": "addon",
        "names": TEXTS,
        "descriptions": TEXTS,
        "price": {"amount": 3000, "currency": "HKD"},
        "validity_days": 30,
        "allowances": [{"unit": "voice_seconds", "zone": "INTL", "amount": 600}],
    }
    assert client.post("/api/v1/plans", json=pack, headers=admin).status_code == 201
    with runtime.unit_of_work() as uow:  # as fulfilment grants a pack bought
        line = uow.session.scalars(select(Line).where(Line.msisdn == msisdn)).one()
        plan = catalog.get_plan(uow, "intl-pack")
        now = uow.now()
        balances.grant_plan_allowances(uow, line, plan, now, now + timedelta(days=30), "addon", "test")
    granted = peer.ask(ro_ccr(peer, "call;6", 0, INITIAL, msisdn, "tel:+447911123456", asked=30))
    assert value_of(granted, RESULT) == 2001 and mscc(granted)[0][3] == 60
    peer.ask(ro_ccr(peer, "call;6", 1, TERMINATE, msisdn, "tel:+447911123456", used=10))
    assert remaining(client, subscriber)[("voice_seconds", "INTL")] == 600 - 60


def sms_event(peer: RawPeer, session: str, msisdn: str, recipient: str) -> Any:
    """An SMS over Ro: one unit debited now, the recipient in SMS-Information."""
    request = peer.ccr(session, 0, EVENT, msisdn)
    request.service_context_id = SMS
    request.requested_action = constants.E_REQUESTED_ACTION_DIRECT_DEBITING
    request.multiple_services_credit_control = []
    request.requested_service_unit = RequestedServiceUnit(cc_service_specific_units=1)
    address = RecipientAddress(address_type=1, address_data=recipient)  # MSISDN
    request.service_information = ServiceInformation(
        sms_information=SmsInformation(recipient_info=[RecipientInfo(recipient_address=[address])])
    )
    return request


def test_an_sms_event_is_debited_once_from_the_recipients_zone(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    ims_plan(client, runtime, "ro-sms", (1, 1), sms_HK=100, sms_CN=10)
    subscriber = active_line(client, runtime, plan_code="ro-sms")
    msisdn = subscriber["line"]["msisdn"]
    peer = connect(PGW)

    request = sms_event(peer, "smsc;1", msisdn, "+8613800138000")
    first = peer.ask(request)
    request.header.is_retransmit = True  # the answer was "lost": the same request again
    again = peer.ask(request)

    for answer in (first, again):
        assert value_of(answer, RESULT) == 2001
        assert answer.message.granted_service_unit.cc_service_specific_units == 1
    assert usage_rows(runtime) == [("smsc;1#0", 1)]
    left = remaining(client, subscriber)
    assert (left[("sms", "CN")], left[("sms", "HK")]) == (9, 100)
    # No international SMS allowance: refused, nothing charged.
    refused = peer.ask(sms_event(peer, "smsc;2", msisdn, "+14155550100"))
    assert value_of(refused, RESULT) == 4012 and len(usage_rows(runtime)) == 1


def test_an_emergency_call_is_answered_and_never_charged_without_minutes_or_when_suspended(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    ims_plan(client, runtime, "ro-data", (60, 60), data_bytes_HK=1_000_000)  # no minutes at all
    subscriber = active_line(client, runtime, plan_code="ro-data")
    msisdn, settings = subscriber["line"]["msisdn"], runtime.settings
    quantum, validity = settings.quota_default_units["voice"], settings.quota_validity_seconds
    peer = connect(PGW)
    assert value_of(peer.ask(ro_ccr(peer, "call;7", 0, INITIAL, msisdn, "tel:+85291234567")), RESULT) == 4012

    opened = peer.ask(ro_ccr(peer, "sos;1", 0, INITIAL, msisdn, "sip:999@ims.duckline.example;user=phone"))
    assert value_of(opened, RESULT) == 2001
    assert mscc(opened) == [(VOICE_GROUP, 2001, [VOICE_SERVICE], quantum, validity)]
    updated = peer.ask(ro_ccr(peer, "sos;1", 1, UPDATE, msisdn, "tel:999", asked=30, used=quantum))
    assert mscc(updated) == [(VOICE_GROUP, 2001, [VOICE_SERVICE], 30, validity)]
    assert value_of(peer.ask(ro_ccr(peer, "sos;1", 2, TERMINATE, msisdn, "tel:999", used=25)), RESULT) == 2001

    with runtime.unit_of_work() as uow:
        line = uow.session.scalars(select(Line).where(Line.msisdn == msisdn)).one()
        line.status = LineStatus.SUSPENDED
    refused = peer.ask(ro_ccr(peer, "call;8", 0, INITIAL, msisdn, "tel:+85291234567", asked=30))
    assert value_of(refused, RESULT) == 4010
    for session, called, marked in (("sos;2", "tel:+852112", False), ("sos;3", "tel:+85291234567", True)):
        # 112 in its +852 form; any number the call server marks an emergency call.
        answer = peer.ask(ro_ccr(peer, session, 0, INITIAL, msisdn, called, asked=30, emergency=marked))
        assert value_of(answer, RESULT) == 2001 and mscc(answer)[0][1:4] == (2001, [VOICE_SERVICE], 30)
        ended = peer.ask(ro_ccr(peer, session, 1, TERMINATE, msisdn, called, used=40))
        assert value_of(ended, RESULT) == 2001

    with runtime.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(UsageRecord)) == 0
        assert uow.session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.delta < 0)) == 0
        assert uow.session.scalar(select(func.count()).select_from(CreditReservation)) == 0
        emergencies = uow.session.scalars(select(CreditSession).where(CreditSession.emergency)).all()
        assert sorted((s.session_id, s.seconds_used, s.status) for s in emergencies) == [
            ("sos;1", quantum + 25, "closed"),
            ("sos;2", 40, "closed"),
            ("sos;3", 40, "closed"),
        ]


def test_a_plans_increments_are_read_and_changed_through_the_api(client: TestClient, runtime: Runtime) -> None:
    ims_plan(client, runtime, "ro-edit", (1, 1), voice_seconds_HK=6000)
    _, admin = staff(runtime, Role.ADMIN, 72)
    shown = client.get("/api/v1/plans/ro-edit").json()
    body = {k: shown[k] for k in ("code", "kind", "names", "descriptions", "validity_days", "validity_months")}
    body |= {"price": shown["price"], "allowances": shown["allowances"]}

    changed = client.put(
        "/api/v1/plans/ro-edit",
        json=body | {"voice_initial_increment": 60, "voice_subsequent_increment": 6},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["voice_initial_increment"], changed.json()["voice_subsequent_increment"]) == (60, 6)
    too_long = client.put("/api/v1/plans/ro-edit", json=body | {"voice_initial_increment": 3601}, headers=admin)
    assert too_long.status_code == 422
    # Left out: back to the default, per second.
    assert client.put("/api/v1/plans/ro-edit", json=body, headers=admin).json()["voice_initial_increment"] == 1


def test_tshark_reads_the_ims_information_of_a_call_and_the_grant_where_ims_charging_looks(
    tmp_path: Path, client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer], gy: GyServer
) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark; .ci/run does)")
    ims_plan(client, runtime, "ro-minute", (60, 60), voice_seconds_HK=6000)
    msisdn = active_line(client, runtime, plan_code="ro-minute")["line"]["msisdn"]
    peer = connect(PGW, cer=False)
    peer.cer()
    peer.ask(ro_ccr(peer, "ts;ro", 0, INITIAL, msisdn, "tel:+85291234567", asked=30))
    packets = tshark_packets(peer, gy.port, tmp_path / "ro.pcap")
    messages = [p.find("proto[@name='diameter']") for p in packets]
    request, answer = [pdml_avps(m) for m in messages if m is not None][2:4]  # after CER, CEA

    def inside(avps: list[dict[str, Any]], *path: int) -> list[dict[str, Any]]:
        for code in path:
            avps = next(a["avps"] for a in avps if a["code"] == code)
        return avps

    ims = inside(request, SERVICE_INFORMATION, IMS_INFORMATION)
    assert {CALLED_PARTY_ADDRESS, CALLING_PARTY_ADDRESS, ROLE_OF_NODE, NODE_FUNCTIONALITY} <= {a["code"] for a in ims}
    assert RESULT in {a["code"] for a in answer}
    block = inside(answer, constants.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL)
    assert {
        constants.AVP_RATING_GROUP,
        constants.AVP_SERVICE_IDENTIFIER,
        RESULT,
        constants.AVP_GRANTED_SERVICE_UNIT,
        constants.AVP_VALIDITY_TIME,
    } <= {a["code"] for a in block}
    granted = inside(answer, constants.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL, constants.AVP_GRANTED_SERVICE_UNIT)
    assert [a["code"] for a in granted] == [constants.AVP_CC_TIME]


def test_node_diameter_as_an_ims_call_server(client: TestClient, runtime: Runtime, gy: GyServer) -> None:
    if reason := node_diameter_missing():
        pytest.skip(reason)
    ims_plan(client, runtime, "ro-minute", (60, 60), voice_seconds_HK=6000, voice_seconds_CN=600)
    subscriber = active_line(client, runtime, plan_code="ro-minute")
    requests = [
        {"label": "opened", "type": INITIAL, "number": 0, "asked": 30, "called": "tel:+8613800138000"},
        {"label": "closed", "type": TERMINATE, "number": 1, "used": 61, "called": "tel:+8613800138000"},
    ]
    done = subprocess.run(  # noqa: S603 (our own script)
        [
            shutil.which("node") or "node",
            str(NODE_CLIENT),
            str(gy.port),
            PGW,
            subscriber["line"]["msisdn"].removeprefix("+"),
            json.dumps(requests),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answers = {line["label"]: dict(line["body"]) for line in map(json.loads, done.stdout.splitlines())}

    opened = answers["opened"]
    assert opened["Result-Code"] == "DIAMETER_SUCCESS"
    block = dict(opened["Multiple-Services-Credit-Control"])
    assert (block["Result-Code"], block["Rating-Group"], block["Service-Identifier"]) == ("DIAMETER_SUCCESS", 100, 1000)
    assert dict(block["Granted-Service-Unit"])["CC-Time"] == 60
    assert answers["closed"]["Result-Code"] == "DIAMETER_SUCCESS"
    left = remaining(client, subscriber)
    assert (left[("voice_seconds", "CN")], left[("voice_seconds", "HK")]) == (600 - 120, 6000)
