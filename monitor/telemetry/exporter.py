"""The OTLP/HTTP pipeline: call records in (on the recorder's writer thread), spans and GenAI
metrics out through the official OpenTelemetry SDK, on the SDK's own threads.

The providers are private to the monitor (the app's global tracer and meter providers are left
alone); a call's span is the child of the app's span that was active when the call started, or
of the span a call through the gateway named in its ``traceparent``
(``CallRecord.trace_parent``). Spans wait in the SDK's batch processor, bounded: when it holds
``max_queue`` spans not yet handed to the exporter, new ones are dropped and counted here instead
of waiting. Export failures stay on the SDK's thread, logged once through :mod:`monitor.safety`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from monitor.records import CallRecord
from monitor.safety import report_failure, swallow
from monitor.telemetry.genai import (
    DURATION_METRIC,
    SCHEMA_URL,
    SECONDS_BUCKETS,
    TIME_TO_FIRST_CHUNK_METRIC,
    TOKEN_BUCKETS,
    TOKEN_USAGE_METRIC,
    CallSpan,
    call_span,
    latest_only,
)

SERVICE_NAME: Final = "longcat-monitor"
INSTRUMENTATION_NAME: Final = "longcat-monitor"
#: Spans waiting for the exporter at most (OTEL_BSP_MAX_QUEUE_SIZE overrides it).
DEFAULT_SPAN_QUEUE: Final = 2048
#: Spans per OTLP request at most (the SDK's default).
DEFAULT_EXPORT_BATCH: Final = 512
#: How long closing the pipeline may take to send what it holds (a dead collector: no longer).
DEFAULT_SHUTDOWN_TIMEOUT_S: Final = 5.0


class ExportFailedError(Exception):
    """The OTLP endpoint did not accept a batch of spans."""


@dataclass(frozen=True, slots=True)
class ExportStats:
    """Counts of spans since the exporter started."""

    #: spans ended and handed to the batch processor
    queued: int
    #: spans the endpoint accepted
    exported: int
    #: spans in batches the endpoint refused or never answered
    failed: int
    #: spans not made because the batch processor was full
    dropped: int


class _CountingSpanExporter(SpanExporter):
    """The OTLP exporter, counting what it takes from the queue and what the endpoint accepts."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.taken = 0
        self.exported = 0
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.taken += len(spans)
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            report_failure("exporting spans over OTLP", exc)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
            report_failure(
                "exporting spans over OTLP",
                ExportFailedError(f"the OTLP endpoint did not accept {len(spans)} spans"),
            )
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _signal_endpoint(base: str | None, signal: str) -> str | None:
    """``MONITOR_OTLP_ENDPOINT`` is a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is; ``None``
    leaves the exporter to the standard variables.

    >>> _signal_endpoint("http://collector:4318/", "traces")
    'http://collector:4318/v1/traces'
    """
    return None if base is None else f"{base.rstrip('/')}/v1/{signal}"


def _span_queue_size() -> int:
    value = os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_SPAN_QUEUE


class OtlpExporter:
    """Turns call records into spans and metric points and sends them over OTLP/HTTP.

    :meth:`export` is called from one thread (the recorder's writer); it never blocks on the
    network. ``endpoint`` is a base URL (``/v1/traces`` and ``/v1/metrics`` are appended);
    ``None`` reads the standard ``OTEL_EXPORTER_OTLP_*`` variables.

    >>> exporter = OtlpExporter("http://127.0.0.1:4318")  # doctest: +SKIP
    >>> exporter.export(records)  # doctest: +SKIP
    >>> exporter.shutdown()  # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        max_queue: int | None = None,
        metric_interval_s: float | None = None,
        opt_in: str | None = None,
    ) -> None:
        if opt_in is None:
            opt_in = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN")
        self.latest_names_only = latest_only(opt_in)
        self.max_queue = max_queue if max_queue is not None else _span_queue_size()
        if self.max_queue <= 0:
            raise ValueError(f"max_queue must be greater than 0, got {self.max_queue!r}")
        attributes: dict[str, Any] = {}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = SERVICE_NAME
        resource = Resource.create(attributes)

        self._spans = _CountingSpanExporter(
            OTLPSpanExporter(endpoint=_signal_endpoint(endpoint, "traces"))
        )
        self._tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._tracer_provider.add_span_processor(
            BatchSpanProcessor(
                self._spans,
                max_queue_size=self.max_queue,
                max_export_batch_size=min(self.max_queue, DEFAULT_EXPORT_BATCH),
            )
        )
        self._tracer = self._tracer_provider.get_tracer(INSTRUMENTATION_NAME, schema_url=SCHEMA_URL)
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=_signal_endpoint(endpoint, "metrics")),
            export_interval_millis=None if metric_interval_s is None else metric_interval_s * 1000,
        )
        self._meter_provider = MeterProvider(
            resource=resource, metric_readers=[reader], shutdown_on_exit=False
        )
        meter = self._meter_provider.get_meter(INSTRUMENTATION_NAME, schema_url=SCHEMA_URL)
        self._token_usage = meter.create_histogram(
            TOKEN_USAGE_METRIC,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            DURATION_METRIC,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._time_to_first_chunk = meter.create_histogram(
            TIME_TO_FIRST_CHUNK_METRIC,
            unit="s",
            description="Time to receive the first chunk in a streaming operation.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._queued = 0
        self._dropped = 0
        self._closed = False

    def export(self, records: Sequence[CallRecord]) -> None:
        """Emit a span and the metric points of each record (from one thread only)."""
        for record in records:
            call = call_span(record, latest_names_only=self.latest_names_only)
            if call is None:
                continue
            self._record_metrics(call)
            if self._queued - self._spans.taken >= self.max_queue:
                self._dropped += 1
                continue
            if self._emit_span(call, record.trace_parent):
                self._queued += 1

    def _emit_span(self, call: CallSpan, parent: Sequence[int] | None) -> bool:
        """Start and end the span of ``call``; whether it was recorded (handed to the batch
        processor): one whose parent was not sampled is not, under the default sampler."""
        context = Context()
        if parent is not None:
            trace_id, span_id, flags = parent
            context = trace.set_span_in_context(
                NonRecordingSpan(SpanContext(trace_id, span_id, True, trace.TraceFlags(flags))),
                context,
            )
        span = self._tracer.start_span(
            call.name,
            context=context,
            kind=SpanKind.CLIENT,
            attributes=call.attributes,
            start_time=call.start_ns,
        )
        if call.failed:
            span.set_status(Status(StatusCode.ERROR))
        recorded = span.is_recording()
        span.end(end_time=call.end_ns)
        return recorded

    def _record_metrics(self, call: CallSpan) -> None:
        attributes = call.metric_attributes
        self._duration.record(call.duration_s, attributes)
        if call.time_to_first_chunk_s is not None:
            self._time_to_first_chunk.record(call.time_to_first_chunk_s, attributes)
        for token_type, count in (("input", call.input_tokens), ("output", call.output_tokens)):
            if count is not None:
                self._token_usage.record(count, {**attributes, "gen_ai.token.type": token_type})

    def stats(self) -> ExportStats:
        return ExportStats(
            queued=self._queued,
            exported=self._spans.exported,
            failed=self._spans.failed,
            dropped=self._dropped,
        )

    def shutdown(self, timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> bool:
        """Send what is held and stop, waiting ``timeout_s`` at most; True when it finished.
        Safe to call twice."""
        if self._closed:
            return True
        self._closed = True
        closing = threading.Thread(
            target=self._shutdown_providers, name="longcat-monitor-otlp-shutdown", daemon=True
        )
        closing.start()
        closing.join(timeout_s)
        return not closing.is_alive()

    def _shutdown_providers(self) -> None:
        with swallow("sending the last spans over OTLP"):
            self._tracer_provider.shutdown()
        with swallow("sending the last metrics over OTLP"):
            self._meter_provider.shutdown()
