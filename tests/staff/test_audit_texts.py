"""Every action the code writes to the audit log has a sentence in every language, every subject
kind has a name, and values read as people read them (never True, 1000 or a raw key)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import duckline
from duckline.core import i18n
from duckline.staff import audit_texts
from duckline.staff.audit import Subject

SOURCE = Path(duckline.__file__).parent


def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    return {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _strings(node: ast.expr, constants: dict[str, ast.expr], where: str) -> Iterator[str]:
    """The action names an argument can take: a literal, a choice between literals, or a literal
    dict (or a module constant holding one) looked up by key. Anything else cannot be checked."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _strings(node.body, constants, where)
        yield from _strings(node.orelse, constants, where)
    elif isinstance(node, ast.Subscript):
        table = constants.get(node.value.id) if isinstance(node.value, ast.Name) else node.value
        if not isinstance(table, ast.Dict):
            pytest.fail(f"{where}: look actions up in a literal dict so this test can read them")
        for value in table.values:
            yield from _strings(value, constants, where)
    elif isinstance(node, ast.Name) and node.id in constants:
        yield from _strings(constants[node.id], constants, where)
    else:
        pytest.fail(f"{where}: write the audit action as a literal string (not {ast.unparse(node)!r})")


def _subject_kind(node: ast.expr) -> str | None:
    """ "order" of f"order:{order.id}", "pool" of "pool"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.partition(":")[0]
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value).partition(":")[0]
    return None


def recorded() -> tuple[dict[str, str], dict[str, str]]:
    """(action → where, subject kind → where) for every `audit.record(...)` call in duckline/."""
    actions: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _module_constants(tree)
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "record"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "audit"
            ):
                continue
            where = f"{path.relative_to(SOURCE.parent)}:{node.lineno}"
            assert len(node.args) >= 4, f"{where}: audit.record(uow, actor_id, action, target, **detail)"
            for action in _strings(node.args[2], constants, where):
                actions.setdefault(action, where)
            kind = _subject_kind(node.args[3])
            assert kind is not None, f"{where}: name the target as 'kind:id'"
            kinds.setdefault(kind, where)
    return actions, kinds


ACTIONS, KINDS = recorded()


def test_the_source_scan_finds_the_audited_actions() -> None:
    assert {"account.phone_changed", "order.refunded", "reconciliation.apply", "plan.updated"} <= set(ACTIONS)
    assert len(ACTIONS) >= 30


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_recorded_action_has_a_sentence(action: str) -> None:
    assert action in audit_texts.ACTIONS, f"{action} ({ACTIONS[action]}) has no sentence in staff/audit_texts.py"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_subject_kind_has_a_name(kind: str) -> None:
    assert kind in audit_texts.SUBJECTS, f"{kind} ({KINDS[kind]}) has no name in staff/audit_texts.py"


@pytest.mark.parametrize("language", ["zh_Hant", "zh_Hans"])
def test_every_sentence_and_name_is_translated(language: str) -> None:
    untranslated = [m for m in audit_texts.MESSAGE_IDS if i18n.gettext(language, m) == m and m != "SMS"]
    assert untranslated == []


def reader(language: str = "zh_Hans") -> audit_texts.Reader:
    return audit_texts.Reader(language, "Asia/Hong_Kong", {"plan:monthly": Subject("plan", "monthly", names=NAMES)})


NAMES = {"en": "Monthly 88", "zh_Hant": "月費 88", "zh_Hans": "月费 88"}


def test_money_phone_numbers_and_switches_are_formatted() -> None:
    zh = reader()
    refund = zh.describe("order.refunded", "order:7", {"amount": {"amount": 1000, "currency": "HKD"}, "reason": "补偿"})
    phone = zh.describe("account.phone_changed", "account:3", {"old": "+85261000001", "new": "+85261000077"})
    features = zh.describe("line.features", "line:2", {"old": {"voicemail": False}, "new": {"voicemail": True}})

    assert refund.text == "订单 #7的 HK$10.00 已退回原付款方式。"
    assert refund.details[0][0] == "原因" and refund.details[0][1].text == "补偿"
    assert phone.text == "账户 #3的登录手机号码由 +852 6100 0001 改为 +852 6100 0077。"
    assert [(c.label, c.old.text, c.new.text) for c in features.changes] == [("语音信箱", "已关闭", "已开启")]


def test_a_plan_edit_lists_each_changed_field_in_the_readers_words() -> None:
    en = reader("en")
    old = {"price": {"amount": 8800, "currency": "HKD"}, "validity": {"days": 0, "months": 1}}
    new = {"price": {"amount": 9800, "currency": "HKD"}, "validity": {"days": 30, "months": 0}}
    allowances = [
        {"unit": "data_bytes", "zone": "HK", "amount": 5 * 1024**3},
        {"unit": "voice_seconds", "zone": "CN", "amount": 6000},
    ]

    edit = en.describe("plan.updated", "plan:monthly", {"old": old, "new": new})
    listed = en.shown("allowances", allowances)

    assert edit.text == "Plan “Monthly 88” changed."
    assert edit.values["subject"].ref == "plan:monthly"
    assert [(c.label, c.old.text, c.new.text) for c in edit.changes] == [
        ("Price", "HK$88.00", "HK$98.00"),
        ("Validity", "1 month", "30 days"),
    ]
    assert listed.text == "5 GB (Hong Kong), 100 min (Mainland China)"
    assert reader("zh_Hant").shown("allowances", allowances).text == "5GB（香港）、100 分鐘（中國內地）"


def test_an_unknown_action_and_old_entries_read_in_the_readers_language() -> None:
    zh = reader()
    unknown = zh.describe(
        "line.teleported", "line:5", {"to": "Mars", "fast": True, "fee": {"amount": 150, "currency": "HKD"}}
    )
    legacy_refund = zh.describe("order.refunded", "order:1", {"amount": 1000, "reason": "x"})  # before currencies
    legacy_review = zh.describe("kyc.reviewed", "person:4", {"status": "verified", "reason": None})

    assert unknown.text == "已为号码 #5记录一项尚无说明的操作。"
    assert [(label, value.text) for label, value in unknown.details] == [
        ("其他信息", "Mars"),
        ("其他信息", "是"),
        ("其他信息", "HK$1.50"),
    ]
    assert legacy_refund.text == "订单 #1的 HK$10.00 已退回原付款方式。"
    assert legacy_review.text == "实名审核：实名记录 #4"
    assert [(label, value.text) for label, value in legacy_review.details] == [("实名核验", "已审核通过")]


def test_a_status_change_names_both_statuses() -> None:
    retired = reader("en").describe("plan.retired", "plan:monthly", {"old": "active", "new": "retired"})

    assert retired.text == "Plan “Monthly 88” retired."
    assert [(c.label, c.old.text, c.new.text) for c in retired.changes] == [("Status", "Active", "Retired")]


def test_self_care_entries_read_with_their_choices_and_days_in_the_readers_words() -> None:
    zh = reader()
    suspended = zh.describe("line.suspended", "line:2", {"old": None, "new": "lost", "sessions_ended": 2})
    closed = zh.describe(
        "account.closed",
        "account:4",
        {"lines": ["+85251700001"], "erase_contact_at": "2027-01-06T02:00:00+00:00", "erase_identity_at": None},
    )
    auto_renew_off = zh.describe("line.auto_renew", "line:2", {"old": True, "new": False, "reason": "method_removed"})

    assert suspended.text == "号码 #2已暂停服务：手机已报失。"
    assert [(label, value.text) for label, value in suspended.details] == [("已结束的网络会话", "2")]
    assert closed.text == "账户 #4已关闭；其号码已终止。"
    assert [(label, value.text) for label, value in closed.details] == [
        ("号码", "+852 5170 0001"),
        ("联系信息删除日期", "2027年1月6日 10:00"),
    ]
    assert [(label, value.text) for label, value in auto_renew_off.details] == [("原因", "已保存的付款方式已移除")]
