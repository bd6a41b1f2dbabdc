"""Ro (3GPP TS 32.299, IMS and SMS online charging): what an IMS call server or an SMS centre puts
in Service-Information beyond Gy, read for `gy.read_request`.

An IMS call server (Kamailio's ims_charging, for one) sends Service-Context-Id 32260@3gpp.org, the
subscriber's Subscription-Id (END_USER_E164, or END_USER_SIP_URI, at the top level or inside
Service-Information), one Multiple-Services-Credit-Control with CC-Time, and IMS-Information
whose Called-Party-Address (else Requested-Party-Address) is the number called: a tel: or sip:
URI, or the digits as dialled. An SMS over Ro (32274@3gpp.org, or 32260 with
CC-Service-Specific-Units) names its recipient in SMS-Information / Recipient-Info /
Recipient-Address, or in IMS-Information's Called-Party-Address.

A call or SMS is charged in the zone of that number (`catalog.voice_rating.zone_of`); a request
that names none is charged where the data rules say (`gy`: the network's MCC, else Hong Kong).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import phonenumbers
from diameter.message import constants

from duckline.catalog.voice_rating import HOME_REGION, number_of

IMS_EMERGENCY = 1  # IMS-Emergency-Indicator EMERGENCY (TS 32.299 7.2.77b)


@dataclass(frozen=True)
class Destination:
    """Whom a call or SMS goes to: the number as dialled ("+852…", or digits without "+"), and
    whether the call server marked it an emergency call."""

    number: str | None
    emergency: bool = False


def destination(ccr: Any) -> Destination | None:
    """The called or texted number in a request's Service-Information; None when it has neither
    IMS-Information nor SMS-Information with one (a data request)."""
    info = ccr.service_information
    if info is None:
        return None
    ims, sms = info.ims_information, info.sms_information
    emergency = ims is not None and ims.ims_emergency_indicator == IMS_EMERGENCY
    addresses: list[str | None] = []
    if sms is not None:
        for recipient in sms.recipient_info or []:
            addresses += [a.address_data for a in recipient.recipient_address or []]
    if ims is not None:
        addresses += [ims.called_party_address, *(ims.requested_party_address or [])]
    number = next(filter(None, map(number_of, addresses)), None)
    return Destination(number, emergency) if number is not None or emergency else None


def sip_subscriber(subscription_ids: list[Any]) -> str | None:
    """The E.164 number of an END_USER_SIP_URI Subscription-Id whose user part is a telephone
    number (sip:+85251234567@ims…, or tel:), for a call server that names its subscriber so."""
    for sid in subscription_ids:
        if sid.subscription_id_type != constants.E_SUBSCRIPTION_ID_TYPE_END_USER_SIP_URI:
            continue
        number = number_of(sid.subscription_id_data)
        if number is None:
            continue
        try:
            parsed = phonenumbers.parse(number, None if number.startswith("+") else HOME_REGION)
        except phonenumbers.NumberParseException:
            continue
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def subscription_ids(ccr: Any) -> list[Any]:
    """Every Subscription-Id of a request: the top-level ones first, then those a call server put
    inside Service-Information."""
    inner = ccr.service_information.subscription_id if ccr.service_information is not None else None
    return [*(ccr.subscription_id or []), *(inner or [])]
