"""Every Multiple-Services-Credit-Control of a request, over TCP on both databases: each answered in
an MSCC of its own (Result-Code, Granted-Service-Unit, Validity-Time) and charged once; an unknown
rating group refused in its MSCC only; the staff's mapping used from the next request on; and
tshark's reading of a two-MSCC request and its answer."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from diameter.message import constants
from diameter.message.avp.grouped import RequestedServiceUnit, UsedServiceUnit
from fastapi.testclient import TestClient
from sqlalchemy import select

from duckline.accounts.roles import Role
from duckline.diameter.server import GyServer
from duckline.runtime import Runtime
from duckline.usage.models import UsageRecord
from tests.diameter.conftest import PGW
from tests.diameter.test_foreign import pdml_avps
from tests.diameter.wire import INITIAL, TERMINATE, UPDATE, RawPeer, tshark_packets, value_of
from tests.factories import staff
from tests.usage.test_usage import active_line, remaining

MB = 1_000_000
RESULT = constants.AVP_RESULT_CODE
Units = dict[str, int]


def ccr(
    peer: RawPeer, session: str, number: int, kind: int, msisdn: str | None, *blocks: tuple[int, Units, Units]
) -> Any:
    """A Gy request with one MSCC per (rating group, requested units, used units)."""
    request = peer.ccr(session, number, kind, msisdn)
    request.multiple_services_credit_control = []
    for group, asked, used in blocks:
        request.add_multiple_services_credit_control(
            requested_service_unit=RequestedServiceUnit(**asked) if asked else None,
            used_service_unit=UsedServiceUnit(**used) if used else None,
            rating_group=group,
        )
    return request


def blocks(answer: Any) -> list[tuple[int, int, int | None, int | None]]:
    """(Rating-Group, Result-Code, granted octets or seconds, Validity-Time) of each MSCC."""
    found = []
    for mscc in answer.message.multiple_services_credit_control:
        gsu = mscc.granted_service_unit
        units = None if gsu is None else (gsu.cc_total_octets if gsu.cc_total_octets is not None else gsu.cc_time)
        found.append((mscc.rating_group, mscc.result_code, units, mscc.validity_time))
    return found


def usage_rows(runtime: Runtime) -> list[tuple[str, int]]:
    with runtime.unit_of_work() as uow:
        rows = uow.session.execute(select(UsageRecord.record_id, UsageRecord.quantity).order_by(UsageRecord.id))
        return [(r, q) for r, q in rows]


def test_two_mscc_are_answered_and_charged_through_initial_update_and_terminate(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    subscriber = active_line(client, runtime)
    msisdn, validity = subscriber["line"]["msisdn"], runtime.settings.quota_validity_seconds
    peer = connect(PGW)

    opened = peer.ask(
        ccr(peer, "two;1", 0, INITIAL, msisdn, (10, {"cc_total_octets": MB}, {}), (100, {"cc_time": 60}, {}))
    )
    assert value_of(opened, RESULT) == 2001
    assert blocks(opened) == [(10, 2001, MB, validity), (100, 2001, 60, validity)]

    update = ccr(peer, "two;1", 1, UPDATE, None, (10, {"cc_total_octets": MB}, {"cc_total_octets": 700_000}))
    update.add_multiple_services_credit_control(
        requested_service_unit=RequestedServiceUnit(cc_time=60),
        used_service_unit=UsedServiceUnit(cc_time=42),
        rating_group=100,
    )
    updated = peer.ask(update)
    assert value_of(updated, RESULT) == 2001 and blocks(updated) == [
        (10, 2001, MB, validity),
        (100, 2001, 60, validity),
    ]

    ended = peer.ask(
        ccr(peer, "two;1", 2, TERMINATE, None, (10, {}, {"cc_total_octets": 100_000}), (100, {}, {"cc_time": 18}))
    )
    assert value_of(ended, RESULT) == 2001 and blocks(ended) == [(10, 2001, None, None), (100, 2001, None, None)]

    assert usage_rows(runtime) == [
        ("two;1#1/10", 700_000),
        ("two;1#1/100", 42),
        ("two;1#2/10", 100_000),
        ("two;1#2/100", 18),
    ]
    left = remaining(client, subscriber)
    assert (left[("data_bytes", "HK")], left[("voice_seconds", "HK")]) == (10 * MB - 800_000, 6000 - 60)


def test_an_unknown_rating_group_gets_5031_in_its_mscc_and_the_other_is_granted(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    msisdn = active_line(client, runtime)["line"]["msisdn"]
    peer = connect(PGW)
    asked = {"cc_total_octets": MB}

    answer = peer.ask(ccr(peer, "rg;1", 0, INITIAL, msisdn, (10, asked, {}), (4242, asked, {})))

    assert value_of(answer, RESULT) == 2001 and not answer.message.header.is_error
    validity = runtime.settings.quota_validity_seconds
    assert blocks(answer) == [(10, 2001, MB, validity), (4242, 5031, None, None)]


def test_a_retransmitted_two_mscc_update_is_charged_once(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    subscriber = active_line(client, runtime)
    peer = connect(PGW)
    asked = {"cc_total_octets": MB}
    peer.ask(ccr(peer, "rt;2", 0, INITIAL, subscriber["line"]["msisdn"], (10, asked, {}), (11, asked, {})))
    update = ccr(
        peer,
        "rt;2",
        1,
        UPDATE,
        None,
        (10, asked, {"cc_total_octets": 300_000}),
        (11, asked, {"cc_total_octets": 200_000}),
    )

    first = peer.ask(update)
    update.header.is_retransmit = True  # the T flag, same End-to-End id: the answer was "lost"
    again = peer.ask(update)

    assert blocks(first) == blocks(again) and [b[1] for b in blocks(first)] == [2001, 2001]
    assert usage_rows(runtime) == [("rt;2#1/10", 300_000), ("rt;2#1/11", 200_000)]
    assert remaining(client, subscriber)[("data_bytes", "HK")] == 10 * MB - 500_000


def test_a_staff_mapping_change_takes_effect_for_the_next_request(
    client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer]
) -> None:
    subscriber = active_line(client, runtime)
    msisdn = subscriber["line"]["msisdn"]
    _, admin = staff(runtime, Role.ADMIN, 41)
    _, support = staff(runtime, Role.SUPPORT, 42)
    peer = connect(PGW)
    asked = {"cc_time": 60}
    assert blocks(peer.ask(ccr(peer, "map;1", 0, INITIAL, msisdn, (500, asked, {}))))[0][1] == 5031

    listed = client.get("/api/v1/rating-groups", headers=support)
    assert listed.status_code == 200
    assert {"rating_group": 100, "service_identifier": None, "unit": "voice_seconds"} in listed.json()
    refused = client.put("/api/v1/rating-groups/500", json={"unit": "voice_seconds"}, headers=support)
    assert refused.status_code == 403
    changed = client.put("/api/v1/rating-groups/500", json={"unit": "voice_seconds"}, headers=admin)
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"rating_group": 500, "service_identifier": None, "unit": "voice_seconds"}

    validity = runtime.settings.quota_validity_seconds
    assert blocks(peer.ask(ccr(peer, "map;2", 0, INITIAL, msisdn, (500, asked, {})))) == [(500, 2001, 60, validity)]
    assert client.delete("/api/v1/rating-groups/500", headers=admin).status_code == 204
    assert client.delete("/api/v1/rating-groups/500", headers=admin).status_code == 404
    assert blocks(peer.ask(ccr(peer, "map;3", 0, INITIAL, msisdn, (500, asked, {}))))[0][1] == 5031
    # No Unsigned32 is that large: a path that names nothing (the API's rule for ids out of range).
    assert client.put("/api/v1/rating-groups/4294967296", json={"unit": "sms"}, headers=admin).status_code == 404
    assert client.put("/api/v1/rating-groups/500", json={"unit": "minutes"}, headers=admin).status_code == 422


def test_tshark_reads_both_mscc_of_a_request_and_its_answer(
    tmp_path: Path, client: TestClient, runtime: Runtime, connect: Callable[..., RawPeer], gy: GyServer
) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark; .ci/run does)")
    msisdn = active_line(client, runtime)["line"]["msisdn"]
    peer = connect(PGW, cer=False)
    peer.cer()
    peer.ask(ccr(peer, "ts;2", 0, INITIAL, msisdn, (10, {"cc_total_octets": MB}, {}), (100, {"cc_time": 60}, {})))
    capture = tmp_path / "mscc.pcap"
    packets = tshark_packets(peer, gy.port, capture)
    messages = [p.find("proto[@name='diameter']") for p in packets]
    request, answer = [pdml_avps(m) for m in messages if m is not None][2:4]  # after CER, CEA

    def mscc_of(avps: list[dict[str, Any]]) -> list[set[int]]:
        return [
            {a["code"] for a in m["avps"]} for m in avps if m["code"] == constants.AVP_MULTIPLE_SERVICES_CREDIT_CONTROL
        ]

    assert mscc_of(request) == [
        {constants.AVP_RATING_GROUP, constants.AVP_REQUESTED_SERVICE_UNIT},
        {constants.AVP_RATING_GROUP, constants.AVP_REQUESTED_SERVICE_UNIT},
    ]
    answered = mscc_of(answer)
    assert len(answered) == 2
    for codes in answered:
        assert {
            constants.AVP_RATING_GROUP,
            RESULT,
            constants.AVP_GRANTED_SERVICE_UNIT,
            constants.AVP_VALIDITY_TIME,
        } <= codes
    assert RESULT in {a["code"] for a in answer}
