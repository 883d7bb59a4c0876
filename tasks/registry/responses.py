"""HTTP responses of the registry API: the error mapping (one status per error class), one-line
JSON errors, ETags. Shared by the routing (``app``) and the socket server (``api``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from tasks.core.errors import LlmoptError
from tasks.registry.errors import (
    FourEyesError,
    InvalidTransitionError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    StaleVersionError,
    TokensNotConfiguredError,
)
from tasks.registry.model import ConfigValidationError, canonical_json

__all__ = [
    "JSON_TYPE",
    "HTTPError",
    "Response",
    "error_response",
    "etag_matches",
    "etag_of",
    "json_response",
]

JSON_TYPE = "application/json"
Response = tuple[int, bytes, str, dict[str, str]]


class HTTPError(Exception):
    """A refusal with its status, machine code and one-line detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def json_response(status: int, payload: Any, extra: dict[str, str] | None = None) -> Response:
    """A JSON response tuple."""
    return status, canonical_json(payload), JSON_TYPE, extra or {}


def etag_of(body: bytes) -> str:
    """The strong ETag of a rendered document."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` / ``If-Match`` header names ``etag`` (or ``*``)."""
    if not header:
        return False
    return any(t.strip() == "*" or t.strip().removeprefix("W/") == etag for t in header.split(","))


_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (TokensNotConfiguredError, 403, "writes_disabled"),
    (PermissionDeniedError, 403, "forbidden"),
    (FourEyesError, 403, "four_eyes"),
    (NotFoundError, 404, "not_found"),
    (PreconditionFailedError, 409, "precondition_failed"),
    (StaleVersionError, 409, "stale_version"),
    (InvalidTransitionError, 409, "invalid_transition"),
    (RecursionError, 400, "too_deep"),
    (ConfigValidationError, 422, "invalid"),
    (LlmoptError, 422, "invalid"),
    (TypeError, 422, "invalid"),
    (ValueError, 422, "invalid"),
    (SQLAlchemyError, 503, "store_unavailable"),
)


def error_response(exc: BaseException) -> Response:
    """The one-line JSON error for ``exc`` (500 only for a bug, never for a client's input)."""
    if isinstance(exc, HTTPError):
        status, code, detail = exc.status, exc.code, exc.detail
    else:
        status, code = next(
            ((s, c) for t, s, c in _ERRORS if isinstance(exc, t)), (500, "internal")
        )
        detail = str(exc) if status < 500 else type(exc).__name__
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    one_line = " ".join(detail.split())[:500]
    return json_response(status, {"error": code, "detail": one_line}, headers)
