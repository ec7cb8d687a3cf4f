"""Error categories shared by both platform clients and the job engine.

Every failure that reaches the job engine is a :class:`SyncError`. Its category decides what the
engine does next; its ``message`` is shown to the user in the sync log, so it is written in plain words.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCategory(StrEnum):
    TRANSIENT = "transient"  # 429, 5xx, timeouts: back off and retry
    AUTH = "auth"  # token refused after one refresh: connection needs reconnect
    CONFLICT = "conflict"  # stale SyncToken, duplicate name: re-read and retry
    PERMANENT = "permanent"  # validation and business rules: fail with a reason, offer Retry


class SyncError(Exception):
    """A failure with a category, a plain-language message and optional details."""

    category: ErrorCategory = ErrorCategory.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        category: ErrorCategory | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if category is not None:
            self.category = category
        self.code = code
        self.retry_after = retry_after
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class TransientError(SyncError):
    category = ErrorCategory.TRANSIENT


class AuthError(SyncError):
    category = ErrorCategory.AUTH


class ConflictError(SyncError):
    category = ErrorCategory.CONFLICT


class PermanentError(SyncError):
    category = ErrorCategory.PERMANENT
