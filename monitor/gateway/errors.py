"""The gateway's own error answers, each in the shape of the API the client called.

OpenAI style paths (``/openai/...``) get ``{"error": {"message", "type", "param", "code"}}``;
Anthropic style paths (``/anthropic/...``) get ``{"type": "error", "error": {"type", "message"}}``,
so the client's SDK raises the error class it would raise for the same status from LongCat.

>>> gateway_error("/anthropic/v1/messages", UPSTREAM_TIMEOUT, "no answer in 600 s").status
504
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One kind of error the gateway answers itself."""

    status: int
    openai_type: str
    anthropic_type: str
    code: str


UPSTREAM_UNREACHABLE: Final = ErrorKind(502, "api_error", "api_error", "upstream_unreachable")
UPSTREAM_TIMEOUT: Final = ErrorKind(504, "timeout_error", "timeout_error", "upstream_timeout")
GATEWAY_TOKEN: Final = ErrorKind(
    401, "authentication_error", "authentication_error", "invalid_gateway_token"
)
QUOTA_EXCEEDED: Final = ErrorKind(429, "rate_limit_error", "rate_limit_error", "quota_exceeded")
NOT_PROXIED: Final = ErrorKind(404, "invalid_request_error", "not_found_error", "not_found")
INVALID_PATH: Final = ErrorKind(
    400, "invalid_request_error", "invalid_request_error", "invalid_path"
)
AMBIGUOUS_CREDENTIALS: Final = ErrorKind(
    400, "invalid_request_error", "invalid_request_error", "ambiguous_credentials"
)
REQUEST_TOO_LARGE: Final = ErrorKind(
    413, "invalid_request_error", "request_too_large", "request_too_large"
)
METHOD_NOT_ALLOWED: Final = ErrorKind(
    405, "invalid_request_error", "invalid_request_error", "method_not_allowed"
)
GATEWAY_OVERLOADED: Final = ErrorKind(503, "server_error", "overloaded_error", "gateway_overloaded")


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """A status, a JSON body and extra headers, ready to send."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


def is_anthropic_path(path: str) -> bool:
    return path == "/anthropic" or path.startswith("/anthropic/")


def gateway_error(
    path: str,
    kind: ErrorKind,
    message: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> ErrorAnswer:
    """The answer for ``kind`` on a request to ``path``; ``extra`` adds fields to ``error``."""
    if is_anthropic_path(path):
        error: dict[str, Any] = {"type": kind.anthropic_type, "message": message}
        body: dict[str, Any] = {"type": "error", "error": error}
    else:
        error = {"message": message, "type": kind.openai_type, "param": None, "code": kind.code}
        body = {"error": error}
    if extra:
        error.update(extra)
    return ErrorAnswer(kind.status, body, dict(headers or {}))
