"""The hot path's reading and writing (`lazy`) against python-diameter's own: the same request as
`gy` understands it, the same bytes on the wire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from diameter.message import Message, MessageHeader, constants
from diameter.message.avp.grouped import (
    FinalUnitIndication,
    GrantedServiceUnit,
    PsInformation,
    RequestedServiceUnit,
    ServiceInformation,
    UsedServiceUnit,
)
from diameter.message.commands import CreditControlAnswer, CreditControlRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from duckline.diameter import codec, gy, lazy
from tests.diameter.wire import RawPeer, value_of

asked = st.one_of(
    st.builds(lambda n: {"cc_total_octets": n}, st.integers(0, 2**64 - 1)),
    st.builds(lambda n: {"cc_input_octets": n}, st.integers(0, 2**40)),
    st.builds(lambda n: {"cc_time": n}, st.integers(0, 2**32 - 1)),
    st.builds(lambda n: {"cc_service_specific_units": n}, st.integers(0, 2**40)),
)
# Used-Service-Unit has CC-Output-Octets too (the library's Requested-Service-Unit does not).
units = st.one_of(
    asked,
    st.builds(lambda a, b: {"cc_input_octets": a, "cc_output_octets": b}, st.integers(0, 2**40), st.integers(0, 2**40)),
)
mscc = st.fixed_dictionaries(
    {
        "rating_group": st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        "service_identifier": st.lists(st.integers(0, 2**32 - 1), max_size=2),
        "requested": st.one_of(st.none(), asked),
        "used": st.lists(units, max_size=2),
    }
)


def ccr_of(
    request_type: int,
    number: int,
    msisdn: str,
    blocks: list[dict[str, Any]],
    mcc: str | None,
    top: dict[str, Any] | None,
) -> bytes:
    ccr = CreditControlRequest()
    ccr.header.hop_by_hop_identifier, ccr.header.end_to_end_identifier = 7, 9
    ccr.header.application_id = 4
    ccr.session_id = "pgw1.operator.test;1;2"
    ccr.origin_host, ccr.origin_realm, ccr.destination_realm = (
        b"pgw1.operator.test",
        b"operator.test",
        b"duckline.example",
    )
    ccr.service_context_id = "32251@3gpp.org"
    ccr.cc_request_type, ccr.cc_request_number = request_type, number
    ccr.event_timestamp = datetime(2026, 12, 8, 1, 2, 3)
    ccr.add_subscription_id(
        subscription_id_type=constants.E_SUBSCRIPTION_ID_TYPE_END_USER_E164, subscription_id_data=msisdn
    )
    for block in blocks:
        ccr.add_multiple_services_credit_control(
            rating_group=block["rating_group"],
            service_identifier=block["service_identifier"] or None,
            requested_service_unit=RequestedServiceUnit(**block["requested"]) if block["requested"] else None,
            used_service_unit=[UsedServiceUnit(**u) for u in block["used"]],
        )
    if top is not None:
        ccr.requested_service_unit = RequestedServiceUnit(**top)
    if mcc is not None:
        ccr.service_information = ServiceInformation(ps_information=PsInformation(tgpp_sgsn_mcc_mnc=mcc))
    return codec.encode(ccr)


def read(data: bytes, lazily: bool) -> gy.GyRequest | str:
    if lazily:
        message = lazy.View(CreditControlRequest, data, lazy.parse(data), MessageHeader.from_bytes(data))
    else:
        message = Message.from_bytes(data)
    try:
        return gy.read_request(message)
    except gy.Refused as refused:
        return f"refused {refused.result_code} {refused.avp}"


@settings(max_examples=150, deadline=None)
@given(
    request_type=st.integers(1, 4),
    number=st.integers(0, 2**32 - 1),
    msisdn=st.sampled_from(["85260000001", "+85260000001", "not-a-number"]),
    blocks=st.lists(mscc, max_size=3),
    mcc=st.one_of(st.none(), st.sampled_from(["45400", "46001", "45501", "31026"])),
    top=st.one_of(st.none(), asked),
)
def test_a_request_reads_the_same_lazily_as_through_the_library(
    request_type: int,
    number: int,
    msisdn: str,
    blocks: list[dict[str, Any]],
    mcc: str | None,
    top: dict[str, Any] | None,
) -> None:
    data = ccr_of(request_type, number, msisdn, blocks, mcc, top)
    assert read(data, lazily=True) == read(data, lazily=False)


@settings(max_examples=150, deadline=None)
@given(
    result=st.sampled_from([2001, 4010, 4012, 5002, 5031]),
    services=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 2**32 - 1)),
            st.one_of(st.none(), st.integers(0, 2**40)),
            st.one_of(st.none(), st.integers(0, 2**32 - 1)),
            st.booleans(),
        ),
        max_size=3,
    ),
    top=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
def test_an_answer_encodes_to_the_same_bytes_as_through_the_library(
    result: int, services: list[tuple[Any, ...]], top: int | None
) -> None:
    def answer() -> CreditControlAnswer:
        cca = CreditControlAnswer()
        cca.header.hop_by_hop_identifier, cca.header.end_to_end_identifier = 0xFFFFFFFF, 1
        cca.session_id, cca.result_code = "pgw1.operator.test;1;2", result
        cca.origin_host, cca.origin_realm = b"ocs.duckline.example", b"duckline.example"
        cca.cc_request_type, cca.cc_request_number = 2, 5
        cca.event_timestamp = datetime(2026, 12, 8, tzinfo=UTC)
        if top is not None:
            cca.granted_service_unit = GrantedServiceUnit(cc_time=top)
        for group, octets, validity, final in services:
            cca.add_multiple_services_credit_control(
                rating_group=group,
                granted_service_unit=GrantedServiceUnit(cc_total_octets=octets) if octets is not None else None,
                validity_time=validity,
                result_code=result,
                final_unit_indication=FinalUnitIndication(final_unit_action=0) if final else None,
            )
        return cca

    assert lazy.encode(answer()) == codec.through_library(answer())


def test_a_value_that_is_not_of_its_type_is_answered_5004_with_the_avp(connect: Callable[..., RawPeer]) -> None:
    peer = connect()
    data = bytearray(ccr_of(1, 0, "85260000001", [], None, {"cc_total_octets": 1}))
    # CC-Request-Number (415) is Unsigned32: give it a 5-byte payload, framing intact.
    at = data.index((415).to_bytes(4, "big") + bytes([0x40, 0, 0, 12]))
    data[at : at + 12] = (415).to_bytes(4, "big") + bytes([0x40, 0, 0, 13]) + b"\0\0\0\0\1\0\0\0"
    data[1:4] = len(data).to_bytes(3, "big")
    peer.send_bytes(bytes(data))
    answer = peer.answer_to(7)
    assert value_of(answer, constants.AVP_RESULT_CODE) == 5004
    failed = answer.first(constants.AVP_FAILED_AVP)
    assert failed is not None and failed.value[0].code == 415 and len(failed.value[0].payload) == 5
