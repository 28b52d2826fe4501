"""The app's active span, read on the caller's thread when a call starts (only while OTLP
export is on), so the exported span of the call can be its child.

OpenTelemetry is imported here only when :func:`trace_parent_reader` is called: with export off
the wrapper never imports it.
"""

from __future__ import annotations

from collections.abc import Callable

TraceParent = tuple[int, int, int]
TraceParentReader = Callable[[], TraceParent | None]


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
