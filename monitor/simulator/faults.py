"""Fault injection for the LongCat simulator: which failure a request asks for.

A request selects a failure with request headers, so the real SDKs can send them through
``extra_headers=`` / ``default_headers=`` and curl through ``-H``.

Headers
-------
``x-simulate-fault: NAME``
    One of the fault names below (case-insensitive).
``x-simulate-fault-times: N``
    The fault applies only while the request's ``x-stainless-retry-count`` header (the SDK's
    attempt number; absent means 0) is below ``N``. ``server_error`` with ``N=2`` fails twice and
    then succeeds under the SDK's own retries. Without this header the fault always applies.
``x-simulate-delay-ms: N``
    Extra latency: before the response headers of a non-streamed call, before the first event of a
    stream. For ``slow_first_token`` it is the first-token delay (default 1500 ms).
``x-simulate-compress: gzip|br|deflate|zstd``
    Compress the response body and set ``content-encoding``. Streams are compressed incrementally,
    flushed after every event, so events still arrive as they are generated.
``x-simulate-cached-tokens: N``
    Report ``N`` cached prompt tokens (OpenAI ``prompt_tokens_details.cached_tokens``, Anthropic
    ``cache_read_input_tokens``).
``x-simulate-retry-after-ms: N``
    Add ``retry-after-ms: N`` to error responses, which the SDKs prefer over ``retry-after``, so
    retry tests do not wait for the SDK's default back-off (or the 60 s of a rate limit).

Fault names (:class:`Fault`)
----------------------------
``auth``               401, ``authentication_error``
``permission``         403, ``permission_error``
``rate_limit``         429, LongCat's ``rate_limit_exceeded`` body and ``retry-after: 60``
``bad_request``        400, ``invalid_request_error``
``context_length``     400, code ``context_length_exceeded`` ("maximum context length is … tokens")
``not_found``          404, ``not_found_error``
``server_error``       500, ``server_error`` / Anthropic ``api_error``
``overloaded``         Anthropic 529 ``overloaded_error``; OpenAI style 503
``quota_exhausted``    402, ``insufficient_quota`` (Anthropic ``billing_error``): the token quota or
                       the balance is spent (also answered, without this header, once a key has
                       spent ``SimulatorOptions.key_token_budget``)
``insufficient_quota`` 403, ``permission_error`` with code ``insufficient_quota``: the key's quota
``bad_gateway``        502, ``server_error`` / ``bad_gateway``
``service_unavailable`` 503, ``server_error`` / ``service_unavailable``
``cut_stream``         a stream that sends some content, then drops the connection with no end
                       marker (the client sees an incomplete chunked body)
``stream_error``       a stream that sends some content, then an in-band error event (the
                       Responses API: an ``error`` event)
``response_failed``    a Responses API stream that sends some content, then ``response.failed``
``response_incomplete`` a Responses API stream that sends some content, then
                       ``response.incomplete`` (reason ``content_filter``); on the other
                       endpoints both behave as ``stream_error``
``slow_first_token``   first event delayed by ``x-simulate-delay-ms`` (default 1500 ms)
``no_usage``           no usage anywhere: no usage chunk even when ``include_usage`` was asked, no
                       ``usage`` in Anthropic events or in non-streamed bodies
``hang``               the server sends nothing for up to 30 s (to exercise client timeouts)

``cut_stream``, ``stream_error`` and the ``response_*`` faults only differ from success on streamed
calls; on a non-streamed call they behave like ``server_error``. Invalid header values are
answered with a 400.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

FAULT_HEADER = "x-simulate-fault"
FAULT_TIMES_HEADER = "x-simulate-fault-times"
DELAY_HEADER = "x-simulate-delay-ms"
COMPRESS_HEADER = "x-simulate-compress"
CACHED_TOKENS_HEADER = "x-simulate-cached-tokens"
RETRY_AFTER_MS_HEADER = "x-simulate-retry-after-ms"
RETRY_COUNT_HEADER = "x-stainless-retry-count"

DEFAULT_SLOW_FIRST_TOKEN_MS = 1500
MAX_DELAY_MS = 120_000


class Fault(enum.StrEnum):
    """The failures a request can ask for with ``x-simulate-fault``."""

    AUTH = "auth"
    PERMISSION = "permission"
    RATE_LIMIT = "rate_limit"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    NOT_FOUND = "not_found"
    SERVER_ERROR = "server_error"
    OVERLOADED = "overloaded"
    QUOTA_EXHAUSTED = "quota_exhausted"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    BAD_GATEWAY = "bad_gateway"
    SERVICE_UNAVAILABLE = "service_unavailable"
    CUT_STREAM = "cut_stream"
    STREAM_ERROR = "stream_error"
    RESPONSE_FAILED = "response_failed"
    RESPONSE_INCOMPLETE = "response_incomplete"
    SLOW_FIRST_TOKEN = "slow_first_token"
    NO_USAGE = "no_usage"
    HANG = "hang"


#: Faults answered with an error status before any body is generated.
STATUS_FAULTS = frozenset(
    {
        Fault.AUTH,
        Fault.PERMISSION,
        Fault.RATE_LIMIT,
        Fault.BAD_REQUEST,
        Fault.CONTEXT_LENGTH,
        Fault.NOT_FOUND,
        Fault.SERVER_ERROR,
        Fault.OVERLOADED,
        Fault.QUOTA_EXHAUSTED,
        Fault.INSUFFICIENT_QUOTA,
        Fault.BAD_GATEWAY,
        Fault.SERVICE_UNAVAILABLE,
    }
)
#: Faults that only show in a stream.
STREAM_FAULTS = frozenset(
    {Fault.CUT_STREAM, Fault.STREAM_ERROR, Fault.RESPONSE_FAILED, Fault.RESPONSE_INCOMPLETE}
)


class Compression(enum.StrEnum):
    """Content encodings the simulator can apply (``x-simulate-compress``)."""

    GZIP = "gzip"
    BR = "br"
    DEFLATE = "deflate"
    ZSTD = "zstd"


class SimulationHeaderError(ValueError):
    """A ``x-simulate-*`` header has a value the simulator does not understand."""


@dataclass(frozen=True)
class Simulation:
    """What one request asked the simulator to do, beyond answering it.

    ``fault`` is already resolved against ``x-simulate-fault-times``: it is ``None`` when no fault
    applies to this attempt.
    """

    fault: Fault | None = None
    delay_ms: int = 0
    compress: Compression | None = None
    cached_tokens: int = 0
    retry_after_ms: int | None = None


def parse_simulation(headers: Mapping[str, str]) -> Simulation:
    """Read the ``x-simulate-*`` headers of a request.

    >>> parse_simulation({"X-Simulate-Fault": "server_error", "x-simulate-fault-times": "1",
    ...                   "x-stainless-retry-count": "1"}).fault is None
    True

    Raises :class:`SimulationHeaderError` on an unknown fault or encoding or a bad number.
    """
    lowered = {name.lower(): value.strip() for name, value in headers.items()}

    fault: Fault | None = None
    raw_fault = lowered.get(FAULT_HEADER, "")
    if raw_fault:
        try:
            fault = Fault(raw_fault.lower())
        except ValueError:
            known = ", ".join(f.value for f in Fault)
            raise SimulationHeaderError(
                f"{FAULT_HEADER}: unknown fault {raw_fault!r} (known: {known})"
            ) from None

    times = _int_header(lowered, FAULT_TIMES_HEADER)
    if fault is not None and times is not None:
        attempt = _int_header(lowered, RETRY_COUNT_HEADER) or 0
        if attempt >= times:
            fault = None

    delay_ms = _int_header(lowered, DELAY_HEADER)
    if delay_ms is not None and delay_ms > MAX_DELAY_MS:
        raise SimulationHeaderError(f"{DELAY_HEADER}: at most {MAX_DELAY_MS} ms")
    if delay_ms is None:
        delay_ms = DEFAULT_SLOW_FIRST_TOKEN_MS if fault is Fault.SLOW_FIRST_TOKEN else 0

    compress: Compression | None = None
    raw_compress = lowered.get(COMPRESS_HEADER, "")
    if raw_compress and raw_compress.lower() != "identity":
        try:
            compress = Compression(raw_compress.lower())
        except ValueError:
            known = ", ".join(c.value for c in Compression)
            raise SimulationHeaderError(
                f"{COMPRESS_HEADER}: unknown encoding {raw_compress!r} (known: {known})"
            ) from None

    return Simulation(
        fault=fault,
        delay_ms=delay_ms,
        compress=compress,
        cached_tokens=_int_header(lowered, CACHED_TOKENS_HEADER) or 0,
        retry_after_ms=_int_header(lowered, RETRY_AFTER_MS_HEADER),
    )


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SimulationHeaderError(f"{name}: expected a whole number, got {raw!r}") from None
    if value < 0:
        raise SimulationHeaderError(f"{name}: must not be negative, got {value}")
    return value
