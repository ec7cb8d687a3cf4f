"""HighLevel-shaped error responses (``common-schemas.json``: BadRequestDTO, UnauthorizedDTO, UnprocessableDTO)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.responses import JSONResponse

ERROR_NAMES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
}


class HLError(Exception):
    """An error answered the way HighLevel answers it: ``{statusCode, message, error}``."""

    def __init__(self, status: int, message: str | list[str], *, error: str | None = None, **extra: Any) -> None:
        super().__init__(message if isinstance(message, str) else "; ".join(message))
        self.status = status
        self.message = message
        self.error = error or ERROR_NAMES.get(status, "Error")
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"statusCode": self.status, "message": self.message, "error": self.error}
        body.update(self.extra)
        body["traceId"] = trace_id()
        return body

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def unprocessable(messages: list[str]) -> HLError:
    return HLError(422, messages)


def trace_id() -> str:
    return str(uuid.uuid4())
