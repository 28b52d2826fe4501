"""A minimal OTLP/HTTP receiver on loopback: keeps the protobuf bodies POSTed to /v1/traces and
/v1/metrics, decoded with opentelemetry-proto, for tests to read; and :func:`finish`, which has
the monitor's default recorder send it everything."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

import monitor
from monitor.recording.recorder import set_recorder


def finish() -> None:
    """Write every call, then close the recorder: its sink sends the last spans and metrics."""
    assert monitor.flush(timeout=30)
    recorder = set_recorder(None)
    assert recorder is not None and recorder.shutdown(timeout=30)


def attributes(pairs: Any) -> dict[str, Any]:
    """OTLP ``KeyValue``s as a plain dict of their values."""
    return {pair.key: value_of(pair.value) for pair in pairs}


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


class OtlpReceiver:
    """Serves on a free port of 127.0.0.1 while open; ``hold`` makes every POST wait."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        self.hold = threading.Event()
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.hold.wait(30)
                receiver.bodies.append((self.path, body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def spans(self) -> list[Any]:
        found = []
        for path, body in self.bodies:
            if path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        found.extend(scope.spans)
        return found

    def metrics(self) -> dict[str, Any]:
        """The last export of each metric by name."""
        found = {}
        for path, body in self.bodies:
            if path == "/v1/metrics":
                request = ExportMetricsServiceRequest.FromString(body)
                for resource in request.resource_metrics:
                    for scope in resource.scope_metrics:
                        for metric in scope.metrics:
                            found[metric.name] = metric
        return found

    def resources(self) -> Iterator[dict[str, Any]]:
        for path, body in self.bodies:
            if path == "/v1/traces":
                for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                    yield attributes(resource.resource.attributes)
