"""Plain data types passed between the wrapper, the recorder and the store."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

Api = Literal["openai", "anthropic", "other"]
UsageSource = Literal["reported", "estimated", "none"]

#: Every value ``CallRecord.error_type`` may take (``None`` means success).
ERROR_TYPES: Final = (
    "auth",
    "permission",
    "quota_exhausted",
    "rate_limit",
    "bad_request",
    "context_length_exceeded",
    "not_found",
    "server_error",
    "overloaded",
    "timeout",
    "connection",
    "stream_interrupted",
    "stream_error",
)

#: CallRecord fields that travel with a record to the recorder but are not columns of
#: ``api_calls``.
UNSTORED_FIELDS: Final = frozenset({"trace_parent"})

#: Error classes of calls that never reached the model and so are not billed.
UNBILLED_ERROR_TYPES: Final = frozenset(
    {
        "auth",
        "permission",
        "quota_exhausted",
        "rate_limit",
        "server_error",
        "overloaded",
        "timeout",
        "connection",
    }
)


def new_event_id() -> str:
    """A unique id per record, so a replayed write lands exactly once.

    Time-ordered like UUIDv7 (48 bits of milliseconds, then 80 random bits): new ids go to the
    end of the unique index instead of anywhere in it, which keeps batched inserts fast.
    """
    # random reseeds itself in a forked child, so workers never repeat each other's ids;
    # the 128 bits as 32 hex digits in one go (cheaper than formatting the two halves)
    return ((time.time_ns() // 1_000_000) << 80 | random.getrandbits(80)).to_bytes(16).hex()


@dataclass(slots=True)
class CallRecord:
    """One attempt at one API call, as the monitored transport saw it.

    Timestamps are timezone-aware UTC. Token counts are ``None`` when nothing was reported
    or estimated. ``labels`` holds the ``monitor.tags(...)`` in force when the call was made.
    ``trace_parent`` is the app's active span as ``(trace_id, span_id, trace_flags)``, taken
    when the call started, only while OTLP export is on (the exported span becomes its child);
    through the gateway, the span the request's valid ``traceparent`` header names, if any.
    """

    started_at: datetime
    api: Api
    endpoint: str
    method: str = "POST"
    key_id: str | None = None
    key_hint: str | None = None
    model: str | None = None
    stream: bool = False
    status_code: int | None = None
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_after_s: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    usage_source: UsageSource = "none"
    attempt: int = 0
    request_id: str | None = None
    client: str | None = None  # the tool that made the call, from its User-Agent
    labels: dict[str, str] = field(default_factory=dict)
    source: str = "wrapper"
    event_id: str = field(default_factory=new_event_id)
    trace_parent: tuple[int, int, int] | None = None
