"""Notifications from payment providers: signature first, then a deduplicated, idempotent apply."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from duckline.billing import checkout
from duckline.billing.providers import InvalidSignature, MalformedWebhook, ProviderError, WebhookAck
from duckline.core.errors import DomainError, ErrorCode
from duckline.web.deps import PUBLIC, RuntimeDep
from duckline.web.openapi import errors

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[PUBLIC])
log = logging.getLogger(__name__)


@router.post(
    "/{provider}",
    responses={400: {"description": "signature not valid, or signed but unreadable; nothing changed"}, **errors(503)},
)
async def receive(provider: Annotated[str, Path(max_length=20)], request: Request, runtime: RuntimeDep) -> Response:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        ack = await _in_thread(runtime, provider, headers, body)
    except InvalidSignature as exc:
        log.warning("rejected %s webhook from %s: %s", provider, request.client.host if request.client else "?", exc)
        raise DomainError(ErrorCode.WEBHOOK_SIGNATURE_INVALID) from exc
    except MalformedWebhook as exc:
        log.warning("unreadable %s webhook, correctly signed: %s", provider, exc)
        raise DomainError(ErrorCode.WEBHOOK_PAYLOAD_INVALID) from exc
    except ProviderError as exc:
        raise DomainError(ErrorCode.PAYMENT_PROVIDER_ERROR) from exc
    return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)


async def _in_thread(runtime: RuntimeDep, provider: str, headers: dict[str, str], body: bytes) -> WebhookAck:
    return await run_in_threadpool(checkout.handle_webhook, runtime, provider, headers, body)
