"""A stand-in for a trace backend on loopback: accepts any POST, answers 200, counts what came.

Run in its own process (``python -m bench.peers.sink PORT``) so that receiving spans costs the
measured process nothing. A POST is only stored; ``GET /stats`` decodes what came since the last
one (OTLP/HTTP protobuf) and returns, per first path segment, the requests, the bytes, the spans,
the spans that carry token usage (OpenTelemetry's ``gen_ai.usage.*_tokens``, Langfuse's
``langfuse.observation.usage_details``) and the sum of their tokens: proof that token counts
arrived, call by call.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.common import free_port, wait_for_port

COUNTS = ("requests", "bytes", "spans", "usage", "tokens", "undecoded")
_stats: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
_pending: list[tuple[str, str, bool, bytes]] = []  # (segment, path, gzipped, body) to count
_lock = threading.Lock()

OTEL_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
LANGFUSE_USAGE = "langfuse.observation.usage_details"
LANGFUSE_PARTS = ("input_tokens", "output_tokens", "prompt_tokens", "completion_tokens")


def span_tokens(attributes: Iterable[Any]) -> int | None:
    """The tokens a span records (input plus output), or None when it carries no usage."""
    values = {a.key: a.value for a in attributes}
    if any(key in values for key in OTEL_TOKENS):
        return sum(int(values[key].int_value) for key in OTEL_TOKENS if key in values)
    if LANGFUSE_USAGE in values:
        usage = json.loads(values[LANGFUSE_USAGE].string_value or "{}")
        total = usage.get("total_tokens", usage.get("total"))
        if isinstance(total, int):
            return total
        parts = [usage[key] for key in LANGFUSE_PARTS if isinstance(usage.get(key), int)]
        return sum(parts) if parts else None
    return None


def _count(entry: dict[str, int], path: str, gzipped: bool, body: bytes) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    if gzipped:
        body = gzip.decompress(body)
    entry["bytes"] += len(body)
    request = ExportTraceServiceRequest()
    try:
        if not path.endswith("/v1/traces"):
            raise ValueError(path)
        request.ParseFromString(body)
    except Exception:  # not a trace export, or protobuf's DecodeError
        entry["undecoded"] += 1
        return
    for resource in request.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                entry["spans"] += 1
                tokens = span_tokens(span.attributes)
                if tokens:
                    entry["usage"] += 1
                    entry["tokens"] += tokens


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        segment = self.path.strip("/").split("/", 1)[0]
        with _lock:
            _stats[segment]["requests"] += 1
            gzipped = self.headers.get("content-encoding") == "gzip"
            _pending.append((segment, self.path, gzipped, body))
        self._answer(b"{}")

    def do_GET(self) -> None:
        with _lock:
            for segment, path, gzipped, body in _pending:
                _count(_stats[segment], path, gzipped, body)
            _pending.clear()
            self._answer(json.dumps(_stats).encode())

    def _answer(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def sink_process() -> Iterator[str]:
    """The sink in its own process; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.peers.sink", str(port)])
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
