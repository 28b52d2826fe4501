"""The parent of a call's exported span, read when the call starts (only while OTLP export is
on): the app's active span, or, for a call through the gateway, the span its caller names in the
request's W3C ``traceparent`` header.

OpenTelemetry is imported here only when :func:`trace_parent_reader` is called: with export off
the wrapper never imports it. Reading the header is pure.

>>> parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
(100985939111033328018442752961257817910, 67667974448284343, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

TraceParent = tuple[int, int, int]
TraceParentReader = Callable[[], TraceParent | None]

#: The W3C Trace Context header that names a request's parent span.
TRACEPARENT_HEADER: Final = "traceparent"
#: ``version-trace_id-parent_id-flags``: 2 + 32 + 16 + 2 hex digits and three dashes.
_TRACEPARENT_CHARS: Final = 55
_LOWER_HEX: Final = frozenset("0123456789abcdef")
_SAMPLED: Final = 0x01


def parse_traceparent(value: str) -> TraceParent | None:
    """``(trace_id, span_id, trace_flags)`` of a ``traceparent`` value, or None if it is not
    valid (W3C Trace Context, section 3.2): lower-case hex only, version ``ff`` forbidden,
    neither id all zeros, version ``00`` exactly four fields. A later version is read as the
    specification asks: its first four fields, and of its flags the sampled bit alone."""
    value = value.strip(" \t")
    if len(value) < _TRACEPARENT_CHARS or not _LOWER_HEX.issuperset(
        value[0:2] + value[3:35] + value[36:52] + value[53:55]
    ):
        return None
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version = value[0:2]
    if version == "ff" or (version == "00" and len(value) != _TRACEPARENT_CHARS):
        return None
    if len(value) > _TRACEPARENT_CHARS and value[_TRACEPARENT_CHARS] != "-":
        return None
    trace_id, span_id, flags = int(value[3:35], 16), int(value[36:52], 16), int(value[53:55], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, flags if version == "00" else flags & _SAMPLED


def header_trace_parent(values: Sequence[str]) -> TraceParent | None:
    """The parent a request's ``traceparent`` header lines name: none unless there is exactly
    one, and it is valid (two could name two parents; which one was meant is unknown)."""
    return parse_traceparent(values[0]) if len(values) == 1 else None


def trace_parent_reader() -> TraceParentReader | None:
    """A function returning the active span as ``(trace_id, span_id, trace_flags)``, or
    ``None`` when there is none; ``None`` itself when OpenTelemetry is not installed."""
    try:
        from opentelemetry.trace import get_current_span
    except ImportError:
        return None

    def read() -> TraceParent | None:
        context = get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return (context.trace_id, context.span_id, int(context.trace_flags))

    return read
