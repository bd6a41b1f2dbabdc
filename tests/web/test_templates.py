"""The templates live in the packages whose pages render them, under one name space (see the comment
where duckline/web/portal/rendering.py builds the environment): each name in one folder only, and
every name a page, an {% extends %} or an {% import %} asks for is found."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from jinja2 import meta

from duckline.core import i18n
from duckline.web.portal.rendering import env

# A template named in the code: "portal/renew.html", or a bare "plans.html" that a console or line
# care page helper puts under console/ or portal/.
NAMED = re.compile(r"[\"']((?:[a-z_]+/)?[a-z_]+\.html)[\"']")


def names_by_folder() -> dict[Path, list[str]]:
    return {
        folder: [path.relative_to(folder).as_posix() for path in folder.rglob("*.html")]
        for folder in i18n.template_folders()
    }


def test_every_template_name_is_in_one_folder_only() -> None:
    counts = Counter(name for names in names_by_folder().values() for name in names)
    assert [name for name, count in counts.items() if count > 1] == []


def test_page_templates_sit_in_feature_packages_and_web_keeps_only_shared_ones() -> None:
    folders = names_by_folder()
    web = sorted(folders[i18n.PACKAGE_DIR / "web" / "templates"])
    assert web == [
        "base.html",
        "console/_support_macros.html",
        "console/layout.html",
        "console/macros.html",
        "console/not_found.html",
        "portal/_lines_macros.html",
        "portal/_renew_macros.html",
    ]
    assert "portal/renew.html" in folders[i18n.PACKAGE_DIR / "billing" / "templates"]
    assert "console/audit.html" in folders[i18n.PACKAGE_DIR / "staff" / "templates"]


def test_every_template_a_template_names_is_found() -> None:
    known = set(env.list_templates())
    for name in sorted(known):
        source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        wanted = set(meta.find_referenced_templates(env.parse(source))) - {None}
        assert wanted <= known, f"{name} names {wanted - known}"


def test_every_template_the_code_names_is_found() -> None:
    known = set(env.list_templates())
    named = {
        (path.name, name)
        for path in i18n.PACKAGE_DIR.rglob("*.py")
        for name in NAMED.findall(path.read_text(encoding="utf-8"))
    }
    assert len(named) > 40
    missing = [
        (module, name) for module, name in sorted(named) if not ({name, f"console/{name}", f"portal/{name}"} & known)
    ]
    assert missing == []
