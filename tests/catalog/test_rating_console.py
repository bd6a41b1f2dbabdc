"""The console's rating groups page: every staff member reads the mapping online charging rates by;
admins set and remove entries, which the next credit-control request uses."""

from __future__ import annotations

from fastapi.testclient import TestClient

from duckline.accounts.roles import Role
from duckline.catalog import rating
from duckline.catalog.rules import Unit
from duckline.runtime import Runtime
from tests.factories import staff
from tests.staff.test_console import browser, csrf, text


def test_staff_read_the_rating_groups_and_admins_change_them(client: TestClient, runtime: Runtime) -> None:
    with runtime.unit_of_work() as uow:
        rating.seed_defaults(uow)  # the PostgreSQL half empties every table between tests
    admin, _ = staff(runtime, Role.ADMIN, 61)
    support, _ = staff(runtime, Role.SUPPORT, 62)

    reader = browser(client, runtime, support.phone)
    shown = reader.get("/console/rating-groups")
    assert shown.status_code == 200
    assert 'id="rating-group-100"' in shown.text and "Voice" in text(shown.text)
    assert 'action="/console/rating-groups"' not in shown.text  # no form for a role that cannot use it
    refused = reader.post(
        "/console/rating-groups", data={"csrf_token": csrf(runtime, reader), "rating_group": "7", "unit": "sms"}
    )
    assert refused.status_code == 403

    editor = browser(client, runtime, admin.phone)
    token = csrf(runtime, editor)
    saved = editor.post(
        "/console/rating-groups",
        data={"csrf_token": token, "rating_group": "300", "service_identifier": "4", "unit": "voice_seconds"},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and "done=rating_group_set" in saved.headers["location"]
    bad = editor.post("/console/rating-groups", data={"csrf_token": token, "rating_group": "x", "unit": "sms"})
    assert bad.status_code == 422 and 'id="form-problem"' in bad.text
    with runtime.unit_of_work() as uow:
        assert rating.units_for(uow, [(300, 4), (300, 5)]) == {(300, 4): Unit.VOICE_SECONDS}

    removed = editor.post(
        "/console/rating-groups/remove",
        data={"csrf_token": token, "rating_group": "300", "service_identifier": "4"},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    with runtime.unit_of_work() as uow:
        assert rating.units_for(uow, [(300, 4)]) == {}
    page = editor.get("/console/rating-groups?done=rating_group_removed")
    assert "The rating group was removed." in text(page.text)
