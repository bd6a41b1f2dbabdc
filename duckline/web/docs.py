"""The API docs page (Swagger UI), served from the `swagger-ui-bundle-v2` package under our own CSP:
no CDN (the page works offline and pulls no third-party code), no inline script (the start-up
code is our static docs.js, which reads the OpenAPI document's URL from the page)."""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from duckline.web.deps import PUBLIC


def install(app: FastAPI, docs_path: str, openapi_url: str) -> None:
    assets = f"{docs_path}/assets"
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(app.title)} — docs</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""

    @app.get(docs_path, include_in_schema=False, dependencies=[PUBLIC])
    def docs() -> HTMLResponse:
        return HTMLResponse(page)

    app.mount(assets, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
