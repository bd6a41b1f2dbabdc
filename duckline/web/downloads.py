"""The personal-data export as an HTTP download, for the API and the portal alike."""

from __future__ import annotations

from datetime import datetime

from fastapi import Response
from fastapi.responses import StreamingResponse

from duckline.accounts import data_export


def download(made: data_export.Export, as_zip: bool, now: datetime) -> Response:
    """The export as an attachment, named for its day; the JSON streamed as it is encoded."""
    stem = f"duckline-data-{now:%Y%m%d}"
    headers = {"Cache-Control": "no-store"}
    if as_zip:
        headers["Content-Disposition"] = f'attachment; filename="{stem}.zip"'
        return Response(made.zip_bytes(), media_type="application/zip", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{stem}.json"'
    return StreamingResponse(made.json_chunks(), media_type="application/json", headers=headers)
