"""Gy (RFC 4006 credit control, 3GPP TS 32.299) messages to and from `usage.quota`.

Reading a Credit-Control-Request:

* every Multiple-Services-Credit-Control (3GPP Gy) is a service of its own, answered in an MSCC of
  its own; when there is none, the units are at the top level (Requested-Service-Unit /
  Used-Service-Unit, plain RFC 4006) and answered there;
* an MSCC with a Rating-Group is charged in the unit the catalogue maps it to (`catalog.rating`;
  the service reads it, and answers 5031 in that MSCC for a group it does not know): every unit
  type in the block is passed on, by kind. For top-level units, or an MSCC without a Rating-Group,
  the kind is that of the units present: octets (CC-Total-Octets, or CC-Input-Octets plus
  CC-Output-Octets) are data, CC-Service-Specific-Units are SMS, CC-Time is voice, tried in that
  order because a data session often reports its duration too. With no units (an empty
  Requested-Service-Unit asks for the default quantum), the Service-Context-Id decides:
  32251@3gpp.org data, 32260@3gpp.org voice, 32274@3gpp.org SMS (with or without the operator's
  labels in front, "ext.01.001.8.32260@3gpp.org");
* an EVENT debits what its Requested-Service-Unit asks for (Requested-Action DIRECT_DEBITING, or
  none given); the other actions (refund, balance check, price enquiry) are refused with 5004;
* a call or an SMS (Ro, `diameter.ro`) is charged in the zone of the number called or texted
  (IMS-Information's Called-Party-Address, SMS-Information's Recipient-Address): Hong Kong, the
  Mainland, Macau or international; the subscriber may also be named by an END_USER_SIP_URI or
  inside Service-Information, as an IMS call server does;
* otherwise the zone is that of the MCC in 3GPP-SGSN-MCC-MNC (top level, or inside
  Service-Information / PS-Information): 454 Hong Kong, 460 the Mainland, 455 Macau; no MCC means
  Hong Kong. Only an INITIAL or EVENT request picks the zone: a session is charged in the zone it
  opened in, whatever its later requests say. Opening on a network with no zone of ours gets 4010
  (no allowance of any line can be used there); usage reported later from such a network is
  still charged.

A request that cannot be understood raises `Refused` with 5005 or 5004 and the path of the AVP at
fault; the caller answers it (quoting that AVP in Failed-AVP) without calling the service, so
nothing changes. The peer layer has already checked the AVPs every CCR must carry (RFC 4006 §3.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from diameter.message import constants
from diameter.message.avp.grouped import FinalUnitIndication, GrantedServiceUnit

from duckline.catalog.rules import Zone
from duckline.catalog.voice_rating import zone_of
from duckline.diameter import ro
from duckline.usage.ingest import UsageKind
from duckline.usage.quota import CreditAnswer, CreditRequest, RequestType, ResultCode, ServiceAnswer, ServiceUnits

MISSING_AVP = constants.E_RESULT_CODE_DIAMETER_MISSING_AVP  # 5005
INVALID_AVP_VALUE = constants.E_RESULT_CODE_DIAMETER_INVALID_AVP_VALUE  # 5004
END_USER_SERVICE_DENIED = int(ResultCode.END_USER_SERVICE_DENIED)  # 4010

SERVICE_CONTEXTS = {
    "32251@3gpp.org": UsageKind.DATA,  # PS charging
    "32260@3gpp.org": UsageKind.VOICE,  # IMS charging
    "32274@3gpp.org": UsageKind.SMS,  # SMS charging
}
ZONES_BY_MCC = {"454": Zone.HK, "460": Zone.MAINLAND, "455": Zone.MACAU}


AvpPath = tuple[tuple[int, int], ...]  # (code, vendor) of each grouped AVP down to the one meant


class Refused(Exception):
    """A request that is answered with `result_code` without asking the service (5005, 5004, or
    4010 for a network with no zone); `avp` is the path of the AVP at fault, for Failed-AVP."""

    def __init__(self, result_code: int, message: str, avp: AvpPath | None = None) -> None:
        super().__init__(message)
        self.result_code, self.avp = result_code, avp


@dataclass(frozen=True)
class GyRequest:
    """What a Credit-Control-Request asks of the service, and how its answer must be shaped."""

    credit: CreditRequest
    in_mscc: bool  # units came in Multiple-Services-Credit-Control: answer in them too
    # The Service-Identifiers of each MSCC as they came, to echo (the service rates by the first).
    service_identifiers: list[list[int]] = field(default_factory=list)


def read_request(ccr: Any) -> GyRequest:
    """Translate a `CreditControlRequest`; raises Refused when it cannot be served."""
    session_id = ccr.session_id
    if not session_id:
        raise Refused(MISSING_AVP, "Session-Id is missing", ((constants.AVP_SESSION_ID, 0),))
    if ccr.cc_request_number is None:
        raise Refused(MISSING_AVP, "CC-Request-Number is missing", ((constants.AVP_CC_REQUEST_NUMBER, 0),))
    if ccr.cc_request_type is None:
        raise Refused(MISSING_AVP, "CC-Request-Type is missing", ((constants.AVP_CC_REQUEST_TYPE, 0),))
    if ccr.auth_application_id != constants.APP_DIAMETER_CREDIT_CONTROL_APPLICATION:
        raise Refused(INVALID_AVP_VALUE, "Auth-Application-Id must be 4", ((constants.AVP_AUTH_APPLICATION_ID, 0),))
    try:
        request_type = RequestType(ccr.cc_request_type)
    except ValueError:
        raise Refused(INVALID_AVP_VALUE, "unknown CC-Request-Type", ((constants.AVP_CC_REQUEST_TYPE, 0),)) from None
    opens = request_type in (RequestType.INITIAL, RequestType.EVENT)
    subscribers = ro.subscription_ids(ccr)
    msisdn = _msisdn(subscribers) or ro.sip_subscriber(subscribers)
    if opens and msisdn is None:
        raise Refused(MISSING_AVP, "no END_USER_E164 Subscription-Id", ((constants.AVP_SUBSCRIPTION_ID, 0),))
    if request_type is RequestType.EVENT and ccr.requested_action not in (
        None,
        constants.E_REQUESTED_ACTION_DIRECT_DEBITING,
    ):
        raise Refused(INVALID_AVP_VALUE, "only DIRECT_DEBITING is supported", ((constants.AVP_REQUESTED_ACTION, 0),))

    blocks = list(ccr.multiple_services_credit_control or [])
    services = tuple(_service(block, ccr.service_context_id, opens, request_type) for block in blocks)
    if blocks:
        first = services[0]
        # The session's kind: that of a block without a rating group (the others are rated by theirs).
        kind = first.kind or _first_unit(first) or (_context_kind(ccr.service_context_id) or UsageKind.DATA)
        requested = used = None
    else:
        reported = list(ccr.used_service_unit)
        kind = _kind_of(ccr.requested_service_unit, reported, ccr.service_context_id, opens)
        requested = _quantity(ccr.requested_service_unit, kind)
        used = sum(q for q in (_quantity(u, kind) for u in reported) if q is not None) if reported else None
        if request_type is RequestType.EVENT:
            requested, used = requested if requested is not None else used, None  # the units to debit now

    called = ro.destination(ccr) if opens else None  # Ro: whom a call or SMS goes to
    if not opens:
        zone = Zone.HK  # a session stays charged in the zone it opened in
    elif called is not None and called.number is not None:
        zone = zone_of(called.number)
    else:
        zone = _zone(ccr)
    credit = CreditRequest(
        session_id=session_id,
        request_number=ccr.cc_request_number,
        request_type=request_type,
        msisdn=msisdn,
        kind=kind,
        zone=zone,
        requested=requested,
        used=used,
        at=_aware(ccr.event_timestamp),
        services=services,
        called_number=called.number if called is not None else None,
        emergency=called is not None and called.emergency,
    )
    identifiers = [list(block.service_identifier or []) for block in blocks]
    return GyRequest(credit, in_mscc=bool(blocks), service_identifiers=identifiers)


def _first_unit(service: ServiceUnits) -> UsageKind | None:
    return next(iter(service.requested), None) or next(iter(service.used), None)


def _service(block: Any, service_context_id: str | None, opens: bool, request_type: RequestType) -> ServiceUnits:
    """One Multiple-Services-Credit-Control: every unit type in it, by kind. With a Rating-Group
    the catalogue says which one counts; without, the units (or the Service-Context-Id) do."""
    asked = block.requested_service_unit
    reported = list(block.used_service_unit or [])
    requested = _units(asked)
    used: dict[UsageKind, int] = {}
    for unit in reported:
        for kind, quantity in _units(unit).items():
            used[kind] = used.get(kind, 0) + quantity
    if request_type is RequestType.EVENT:
        requested, used = requested or used, {}  # the units to debit now
    hint = None
    if block.rating_group is None:
        hint = _kind_of(asked, reported, service_context_id, opens)
    identifiers = list(block.service_identifier or [])
    return ServiceUnits(
        rating_group=block.rating_group,
        service_identifier=identifiers[0] if identifiers else None,
        requested=requested,
        used=used,
        kind=hint,
    )


def _units(unit: Any) -> dict[UsageKind, int]:
    if unit is None:
        return {}
    found = {}
    for kind in (UsageKind.DATA, UsageKind.SMS, UsageKind.VOICE):
        quantity = _quantity(unit, kind)
        if quantity is not None:
            found[kind] = quantity
    return found


def write_answer(cca: Any, request: GyRequest, answer: CreditAnswer) -> None:
    """Fill a `CreditControlAnswer` (made by the application's generate_answer) from the service's
    answer: each MSCC answered in its own MSCC (its Result-Code, and its grant in its unit), or,
    for units asked at the top level, there. A request refused as a whole echoes each MSCC with the
    request's Result-Code."""
    cca.result_code = int(answer.result_code)
    cca.cc_request_type = int(request.credit.request_type)
    cca.cc_request_number = request.credit.request_number
    if not request.in_mscc:
        cca.granted_service_unit = _granted(request.credit.kind, answer.granted) if answer.granted is not None else None
        cca.validity_time = answer.validity_seconds
        cca.final_unit_indication = _final(answer.final)
        return
    asked = request.credit.services
    services = answer.services or tuple(
        ServiceAnswer(s.rating_group, s.service_identifier, answer.result_code) for s in asked
    )
    for service, identifiers in zip(services, request.service_identifiers, strict=False):
        granted = None
        if service.granted is not None and service.kind is not None:
            granted = _granted(service.kind, service.granted)
        cca.add_multiple_services_credit_control(
            granted_service_unit=granted,
            rating_group=service.rating_group,
            service_identifier=identifiers or None,
            validity_time=service.validity_seconds,
            result_code=int(service.result_code),
            final_unit_indication=_final(service.final),
        )


def _final(final: bool) -> Any:
    return FinalUnitIndication(final_unit_action=constants.E_FINAL_UNIT_ACTION_TERMINATE) if final else None


def _msisdn(subscription_ids: list[Any]) -> str | None:
    for sid in subscription_ids:
        if sid.subscription_id_type == constants.E_SUBSCRIPTION_ID_TYPE_END_USER_E164:
            digits = (sid.subscription_id_data or "").removeprefix("+")
            if not digits.isdigit():
                path = ((constants.AVP_SUBSCRIPTION_ID, 0), (constants.AVP_SUBSCRIPTION_ID_DATA, 0))
                raise Refused(INVALID_AVP_VALUE, "END_USER_E164 is not a number", path)
            return f"+{digits}"
    return None


def _kind_of(asked: Any, reported: list[Any], service_context_id: str | None, opens: bool) -> UsageKind:
    kind = _kind(asked) or next(filter(None, map(_kind, reported)), None) or _context_kind(service_context_id)
    if kind is not None:
        return kind
    if opens:
        raise Refused(
            MISSING_AVP, "no units and no known Service-Context-Id", ((constants.AVP_REQUESTED_SERVICE_UNIT, 0),)
        )
    return UsageKind.DATA  # a continuing request is charged in its session's unit: this one is unused


def _context_kind(service_context_id: str | None) -> UsageKind | None:
    """The kind a Service-Context-Id names: "32260@3gpp.org", or with the operator's labels in
    front as TS 32.299 7.1.12 writes it ("ext.01.001.8.32260@3gpp.org", as Kamailio sends)."""
    local, at, domain = (service_context_id or "").rpartition("@")
    return SERVICE_CONTEXTS.get(local.rpartition(".")[2] + at + domain)


def _octets(unit: Any) -> int | None:
    if unit.cc_total_octets is not None:
        return int(unit.cc_total_octets)
    # Requested/Granted-Service-Unit have no CC-Output-Octets in the library: getattr.
    parts = [unit.cc_input_octets, getattr(unit, "cc_output_octets", None)]
    return sum(int(p) for p in parts if p is not None) if any(p is not None for p in parts) else None


def _kind(unit: Any) -> UsageKind | None:
    if unit is None:
        return None
    if _octets(unit) is not None:
        return UsageKind.DATA
    if unit.cc_service_specific_units is not None:
        return UsageKind.SMS
    if unit.cc_time is not None:
        return UsageKind.VOICE
    return None


def _quantity(unit: Any, kind: UsageKind) -> int | None:
    if unit is None:
        return None
    if kind is UsageKind.DATA:
        return _octets(unit)
    value = unit.cc_service_specific_units if kind is UsageKind.SMS else unit.cc_time
    return None if value is None else int(value)


def _granted(kind: UsageKind, units: int) -> GrantedServiceUnit:
    if kind is UsageKind.DATA:
        return GrantedServiceUnit(cc_total_octets=units)
    if kind is UsageKind.SMS:
        return GrantedServiceUnit(cc_service_specific_units=units)
    return GrantedServiceUnit(cc_time=units)


def _zone(ccr: Any) -> Zone:
    mcc_mnc = ccr.sgsn_mcc_mnc
    ps = ccr.service_information.ps_information if ccr.service_information is not None else None
    if not mcc_mnc and ps is not None:
        mcc_mnc = ps.tgpp_sgsn_mcc_mnc
    if not mcc_mnc:
        return Zone.HK
    text = mcc_mnc.decode("ascii", "replace") if isinstance(mcc_mnc, bytes) else str(mcc_mnc)
    zone = ZONES_BY_MCC.get(text[:3])
    if zone is None:
        raise Refused(END_USER_SERVICE_DENIED, f"no zone for network {text}")
    return zone


def _aware(value: datetime | None) -> datetime | None:
    # The library decodes Time AVPs with datetime.fromtimestamp: naive, in the host's local time.
    return None if value is None else value.astimezone(UTC)
