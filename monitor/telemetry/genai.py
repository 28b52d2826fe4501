"""A call record in the shape of the OpenTelemetry GenAI semantic conventions (pure: no I/O, no
OpenTelemetry import).

The names follow semantic conventions v1.41.1, the last release that defines the GenAI
conventions (later releases moved them to their own repository, not released yet). By default the
one attribute renamed since v1.36.0 is sent under both names (``gen_ai.system`` beside
``gen_ai.provider.name``) for tools that read the old one;
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` sends only the current names.
Prompts and completions are never part of a record, so never exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from monitor.records import UNBILLED_ERROR_TYPES, CallRecord

SEMCONV_VERSION: Final = "1.41.1"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"
PROVIDER: Final = "longcat"
#: The value of OTEL_SEMCONV_STABILITY_OPT_IN (comma-separated) that drops the old names.
LATEST_ONLY_OPT_IN: Final = "gen_ai_latest_experimental"

#: Bucket boundaries the conventions give for each histogram.
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
SECONDS_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip

TOKEN_USAGE_METRIC: Final = "gen_ai.client.token.usage"
DURATION_METRIC: Final = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK_METRIC: Final = "gen_ai.client.operation.time_to_first_chunk"

#: The operation of each inference endpoint, by the end of its path (the Responses API and the
#: Anthropic Messages API are chat operations too). Calls to other paths (model lists) are not
#: GenAI operations and are not exported.
OPERATIONS: Final = (
    ("/chat/completions", "chat"),
    ("/responses", "chat"),
    ("/messages", "chat"),
    ("/completions", "text_completion"),
    ("/embeddings", "embeddings"),
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_US: Final = 1_000


def latest_only(opt_in: str | None) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for the latest GenAI names alone.

    >>> latest_only("http, gen_ai_latest_experimental"), latest_only(None)
    (True, False)
    """
    return LATEST_ONLY_OPT_IN in {part.strip() for part in (opt_in or "").split(",")}


def operation_name(endpoint: str) -> str | None:
    """The ``gen_ai.operation.name`` of a call to ``endpoint``; ``None`` if it is not one.

    >>> operation_name("/openai/v1/chat/completions"), operation_name("/openai/v1/models")
    ('chat', None)
    """
    path = endpoint.rstrip("/")
    for suffix, operation in OPERATIONS:
        if path.endswith(suffix):
            return operation
    return None


def input_tokens(record: CallRecord) -> int | None:
    """Every input token, cached ones included, as ``gen_ai.usage.input_tokens`` counts them.

    OpenAI-style ``prompt_tokens``/``input_tokens`` already hold the cached part; Anthropic's
    ``input_tokens`` leave out cache reads and writes, which are added here.

    >>> from datetime import datetime, UTC
    >>> r = CallRecord(datetime.now(UTC), "anthropic", "/v1/messages", input_tokens=10,
    ...                cache_read_tokens=90, cache_write_tokens=5)
    >>> input_tokens(r)
    105
    """
    if record.input_tokens is None:
        return None
    if record.api == "anthropic":
        return (
            record.input_tokens + (record.cache_read_tokens or 0) + (record.cache_write_tokens or 0)
        )
    return record.input_tokens


@dataclass(frozen=True, slots=True)
class CallSpan:
    """What the exporter needs to emit the span and the metric points of one call."""

    name: str
    start_ns: int
    end_ns: int
    failed: bool
    #: the span's attributes
    attributes: Mapping[str, str | int | float | bool]
    #: the attributes every metric point of the call carries
    metric_attributes: Mapping[str, str | int]
    #: the billed tokens, for the token histogram (``None``: none to record)
    input_tokens: int | None
    output_tokens: int | None
    duration_s: float
    time_to_first_chunk_s: float | None


def call_span(record: CallRecord, *, latest_names_only: bool = False) -> CallSpan | None:
    """The span and metric points of ``record``; ``None`` when it is not a GenAI operation."""
    operation = operation_name(record.endpoint)
    if operation is None:
        return None
    common: dict[str, str | int] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": PROVIDER,
    }
    if not latest_names_only:
        common["gen_ai.system"] = PROVIDER
    if record.model:
        common["gen_ai.request.model"] = record.model
        if record.error_type is None and record.status_code is not None:
            common["gen_ai.response.model"] = record.model
    if record.error_type is not None:
        common["error.type"] = record.error_type
    metric_attributes = dict(common)
    if record.key_id:
        metric_attributes["longcat.key.id"] = record.key_id

    attributes: dict[str, str | int | float | bool] = dict(common)
    if record.stream:
        attributes["gen_ai.request.stream"] = True
    ttfc_s = record.ttft_ms / 1000 if record.stream and record.ttft_ms is not None else None
    if ttfc_s is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = ttfc_s
    inputs = input_tokens(record)
    for name, value in (
        ("gen_ai.usage.input_tokens", inputs),
        ("gen_ai.usage.output_tokens", record.output_tokens),
        ("gen_ai.usage.cache_read.input_tokens", record.cache_read_tokens),
        ("gen_ai.usage.cache_creation.input_tokens", record.cache_write_tokens),
        ("gen_ai.usage.reasoning.output_tokens", record.reasoning_tokens),
        ("http.response.status_code", record.status_code),
        ("http.request.resend_count", record.attempt or None),
        ("longcat.key.id", record.key_id),
        ("longcat.key.hint", record.key_hint),
        ("longcat.client", getattr(record, "client", None)),
        ("longcat.api", record.api),
        ("longcat.endpoint", record.endpoint),
        ("longcat.source", record.source),
        ("longcat.usage.source", record.usage_source),
        ("longcat.event_id", record.event_id),
    ):
        if value is not None:
            attributes[name] = value
    for label, value in record.labels.items():
        attributes[f"longcat.label.{label}"] = value

    # the token histogram counts what the call is billed: nothing for a call refused unbilled
    billed = record.usage_source != "none" and record.error_type not in UNBILLED_ERROR_TYPES
    start_ns = (record.started_at - _EPOCH) // timedelta(microseconds=1) * _NS_PER_US
    duration_s = (record.latency_ms or 0.0) / 1000
    return CallSpan(
        name=f"{operation} {record.model}" if record.model else operation,
        start_ns=start_ns,
        end_ns=start_ns + round(duration_s * 1e9),
        failed=record.error_type is not None,
        attributes=attributes,
        metric_attributes=metric_attributes,
        input_tokens=inputs if billed else None,
        output_tokens=record.output_tokens if billed else None,
        duration_s=duration_s,
        time_to_first_chunk_s=ttfc_s,
    )
