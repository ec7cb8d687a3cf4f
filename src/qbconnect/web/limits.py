"""Request body size, enforced before and while reading (a pure ASGI middleware).

A ``Content-Length`` over the limit is answered 413 without reading a byte of the body; a body without
one (chunked) is counted as it streams and cut at the limit, so at most ``max_bytes`` of any request is
ever held in memory.
"""

from __future__ import annotations

import json

import structlog
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (FastAPI passes HTTPException on)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"body larger than {limit} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            log.warning("http.body_too_large", path=scope.get("path"), declared=declared, limit=self.max_bytes)
            await _too_large(send, self.max_bytes)
            return
        received = 0
        limit = self.max_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    log.warning("http.body_too_large", path=scope.get("path"), streamed=received, limit=limit)
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"error": f"body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
