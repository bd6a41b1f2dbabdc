"""The demo world: a catalogue, a number pool, staff, subscribers with usage. Safe to run twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select

from duckline.accounts import otp
from duckline.accounts import service as accounts
from duckline.accounts.models import Account
from duckline.accounts.roles import Role
from duckline.billing.pricing import PromotionKind
from duckline.catalog import promotions
from duckline.catalog import service as catalog
from duckline.catalog.models import Plan, Promotion
from duckline.catalog.rules import Allowance, PlanKind, Unit, Validity, Zone
from duckline.core.money import Money
from duckline.core.unit_of_work import UnitOfWork
from duckline.lines import numbers
from duckline.lines import service as lines
from duckline.lines.models import Line
from duckline.usage import ingest as usage

GB = 1024**3
MINUTES = 60
DEMO_PASSWORD = "duckline-demo"  # noqa: S105 - published demo credential, development only
POOL = [f"+8525170{n:04d}" for n in range(200)]


def _texts(en: str, hant: str, hans: str) -> dict[str, str]:
    return {"en": en, "zh_Hant": hant, "zh_Hans": hans}


CATALOGUE = [
    catalog.PlanInput(
        code="hk-voice-30",
        kind=PlanKind.PLAN,
        names=_texts("Voice Plus 30", "通話豐 30日", "通话丰 30日"),
        descriptions=_texts(
            "3,000 local minutes, 300 SMS and 5 GB of data for 30 days.",
            "30日內本地通話 3,000 分鐘、短訊 300 條及數據 5 GB。",
            "30天内本地通话 3,000 分钟、短信 300 条及数据 5 GB。",
        ),
        price=Money(8800, "HKD"),
        validity=Validity(days=30),
        allowances=[
            Allowance(Unit.VOICE_SECONDS, Zone.HK, 3000 * MINUTES),
            Allowance(Unit.SMS, Zone.HK, 300),
            Allowance(Unit.DATA_BYTES, Zone.HK, 5 * GB),
        ],
    ),
    catalog.PlanInput(
        code="hk-data-30",
        kind=PlanKind.PLAN,
        names=_texts("Data Max 30", "數據王 30日", "数据王 30日"),
        descriptions=_texts(
            "50 GB of local data, 200 minutes and 100 SMS for 30 days.",
            "30日內本地數據 50 GB、通話 200 分鐘及短訊 100 條。",
            "30天内本地数据 50 GB、通话 200 分钟及短信 100 条。",
        ),
        price=Money(12800, "HKD"),
        validity=Validity(days=30),
        allowances=[
            Allowance(Unit.DATA_BYTES, Zone.HK, 50 * GB),
            Allowance(Unit.VOICE_SECONDS, Zone.HK, 200 * MINUTES),
            Allowance(Unit.SMS, Zone.HK, 100),
        ],
    ),
    catalog.PlanInput(
        code="cross-border-month",
        kind=PlanKind.PLAN,
        names=_texts("Cross-border Month", "中港澳月費", "中港澳月费"),
        descriptions=_texts(
            "One calendar month in Hong Kong, the Mainland and Macau: minutes and data in each.",
            "一個曆月，香港、內地及澳門通用：每區均有通話及數據。",
            "一个历月，香港、内地及澳门通用：每区均有通话及数据。",
        ),
        price=Money(16800, "HKD"),
        validity=Validity(months=1),
        allowances=[
            Allowance(Unit.VOICE_SECONDS, Zone.HK, 1000 * MINUTES),
            Allowance(Unit.DATA_BYTES, Zone.HK, 20 * GB),
            Allowance(Unit.SMS, Zone.HK, 200),
            Allowance(Unit.VOICE_SECONDS, Zone.MAINLAND, 500 * MINUTES),
            Allowance(Unit.DATA_BYTES, Zone.MAINLAND, 10 * GB),
            Allowance(Unit.VOICE_SECONDS, Zone.MACAU, 100 * MINUTES),
            Allowance(Unit.DATA_BYTES, Zone.MACAU, 2 * GB),
        ],
    ),
    catalog.PlanInput(
        code="addon-data-5gb",
        kind=PlanKind.ADDON,
        names=_texts("Data Pack 5 GB", "數據增值包 5 GB", "数据增值包 5 GB"),
        descriptions=_texts(
            "5 GB of local data until your plan expires.",
            "本地數據 5 GB，有效期至現有計劃屆滿。",
            "本地数据 5 GB，有效期至现有套餐到期。",
        ),
        price=Money(5000, "HKD"),
        validity=Validity(days=30),
        allowances=[Allowance(Unit.DATA_BYTES, Zone.HK, 5 * GB)],
    ),
    catalog.PlanInput(
        code="addon-cn-voice-300",
        kind=PlanKind.ADDON,
        names=_texts("Mainland Minutes 300", "內地通話 300 分鐘", "内地通话 300 分钟"),
        descriptions=_texts(
            "300 minutes of calls in the Mainland until your plan expires.",
            "內地通話 300 分鐘，有效期至現有計劃屆滿。",
            "内地通话 300 分钟，有效期至现有套餐到期。",
        ),
        price=Money(6800, "HKD"),
        validity=Validity(days=30),
        allowances=[Allowance(Unit.VOICE_SECONDS, Zone.MAINLAND, 300 * MINUTES)],
    ),
]

STAFF = [("+85251000001", Role.ADMIN), ("+85251000002", Role.SUPPORT), ("+85251000003", Role.FINANCE)]
NETWORK_PHONE = "+85251000009"


@dataclass(frozen=True)
class DemoSubscriber:
    phone: str
    language: str
    identity: accounts.IdentityInput
    plan: str
    usage_fraction: float


SUBSCRIBERS = [
    DemoSubscriber(
        "+85291234567",
        "zh_Hant",
        accounts.IdentityInput("hkid", "A123456(3)", "CHAN Tai Man", "陳大文", date(1990, 5, 17)),
        "hk-voice-30",
        0.8,
    ),
    DemoSubscriber(
        "+8613800138000",
        "zh_Hans",
        accounts.IdentityInput("cn_resident_id", "11010519491231002X", "LI Na", "李娜", date(1949, 12, 31)),
        "cross-border-month",
        0.3,
    ),
    DemoSubscriber(
        "+85261234567",
        "en",
        accounts.IdentityInput("passport", "K12345678", "Alex Morgan", None, date(1995, 2, 28)),
        "hk-data-30",
        0.95,
    ),
]

# A 1x1 PNG standing in for the scanned identity document.
DEMO_DOCUMENT = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass
class DemoReport:
    logins: list[tuple[str, str, str]]
    lines: dict[str, list[str]]  # login phone → the msisdns of its lines
    network_token: str


def load(uow: UnitOfWork) -> DemoReport:
    numbers.import_numbers(uow, POOL)
    admin = _staff(uow)
    existing = set(uow.session.scalars(select(Plan.code)).all())
    for form in CATALOGUE:
        if form.code not in existing:
            catalog.create_plan(uow, admin, form)
    if uow.session.scalar(select(Promotion.id).limit(1)) is None:
        for promotion in _promotions(uow):
            promotions.create(uow, admin, promotion)
    logins = [(phone, DEMO_PASSWORD, role.value) for phone, role in STAFF]
    for subscriber in SUBSCRIBERS:
        _subscriber(uow, admin, subscriber)
        logins.append((subscriber.phone, DEMO_PASSWORD, f"subscriber ({subscriber.language})"))
    network = uow.session.scalars(select(Account).where(Account.phone == NETWORK_PHONE)).first()
    if network is None:
        network = accounts.create_staff(uow, NETWORK_PHONE, DEMO_PASSWORD, Role.NETWORK)
    token = accounts.issue_token(uow, network, "demo network element", None)
    owned = uow.session.execute(
        select(Account.phone, Line.msisdn).join(Line, Line.account_id == Account.id).order_by(Line.id)
    ).all()
    by_phone: dict[str, list[str]] = {}
    for phone, msisdn in owned:
        by_phone.setdefault(phone, []).append(msisdn)
    return DemoReport(logins, by_phone, token)


def _promotions(uow: UnitOfWork) -> list[promotions.PromotionInput]:
    now = uow.now()
    return [
        promotions.PromotionInput(
            name=_texts("Cross-border 10% off", "中港澳月費九折", "中港澳月费九折"),
            kind=PromotionKind.PERCENT_OFF,
            percent_off=10,
            plan_codes=("cross-border-month",),
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=60),
        ),
        promotions.PromotionInput(
            # For a line's first purchase: a new line's activation, or a demo line's first renewal.
            name=_texts("Welcome: 20% off your first purchase", "首次購買八折", "首次购买八折"),
            kind=PromotionKind.PERCENT_OFF,
            percent_off=20,
            code="WELCOME20",
            first_renewal_only=True,
            max_uses_per_account=1,
            starts_at=now - timedelta(days=1),
        ),
        promotions.PromotionInput(
            name=_texts("Data Max: 2 GB bonus", "數據王額外送 2 GB", "数据王额外送 2 GB"),
            kind=PromotionKind.BONUS,
            bonus=(Allowance(Unit.DATA_BYTES, Zone.HK, 2 * GB),),
            plan_codes=("hk-data-30",),
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=60),
        ),
    ]


def _staff(uow: UnitOfWork) -> Account:
    found = {a.phone: a for a in uow.session.scalars(select(Account).where(Account.role != Role.SUBSCRIBER))}
    for phone, role in STAFF:
        if phone not in found:
            found[phone] = accounts.create_staff(uow, phone, DEMO_PASSWORD, role)
    return found[STAFF[0][0]]


def _subscriber(uow: UnitOfWork, admin: Account, demo: DemoSubscriber) -> None:
    if uow.session.scalar(select(Account.id).where(Account.phone == demo.phone)) is not None:
        return
    phone = accounts.register(
        uow,
        accounts.Registration(demo.phone, DEMO_PASSWORD, demo.identity, DEMO_DOCUMENT, demo.language),
    )
    account = uow.session.scalars(select(Account).where(Account.phone == phone)).one()
    # Demo accounts skip the SMS round trip: mark the code used and the phone verified directly.
    account.phone_verified_at = uow.now()
    otp.expire_all(uow, account.phone)
    line = lines.open_line(uow, account)
    plan = catalog.get_plan(uow, demo.plan)
    lines.activate(uow, admin, line, plan)
    used = catalog.allowances_of(uow, [plan.id])[plan.id]
    records = [
        usage.UsageInput(
            f"demo-{line.id}-{i}",
            line.msisdn,
            _KIND[a.unit],
            a.zone,
            int(a.amount * demo.usage_fraction),
            uow.now() + timedelta(minutes=1 + i),
        )
        for i, a in enumerate(used)
    ]
    usage.ingest(uow, "demo", records)


_KIND = {
    Unit.VOICE_SECONDS: usage.UsageKind.VOICE,
    Unit.SMS: usage.UsageKind.SMS,
    Unit.DATA_BYTES: usage.UsageKind.DATA,
}
