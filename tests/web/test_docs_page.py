"""The API docs page is served from our own origin (the swagger-ui-bundle package and our start-up
script) under the same Content-Security-Policy as every page: it works without internet and pulls
no third-party code."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from duckline.web.csp import CSP

DOCS = "/api/v1/docs"


def referenced(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_the_docs_page_names_no_other_origin(client: TestClient) -> None:
    response = client.get(DOCS)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    assert not re.search(r"https?://", response.text), "no URL to another host"
    assert "<script>" not in response.text and "<style" not in response.text, "the CSP forbids inline code"
    assert all(url.startswith("/") and not url.startswith("//") for url in referenced(response.text))


def test_every_asset_of_the_docs_page_is_served(client: TestClient) -> None:
    html = client.get(DOCS).text
    scripts = re.findall(r'<script src="([^"]+)"', html)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert len(scripts) >= 2 and styles
    for url, kind in [(s, "javascript") for s in scripts] + [(s, "text/css") for s in styles]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert kind in response.headers["content-type"], url
    assert client.get("/api/v1/openapi.json").status_code == 200
