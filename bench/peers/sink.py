"""A stand-in for a trace backend on loopback: accepts any POST, answers 200, counts what came.

Run in its own process (``python -m bench.peers.sink PORT``) so that receiving spans costs the
measured process nothing. ``GET /stats`` returns, per first path segment, the requests, the bytes
and the spans whose (gunzipped) attributes carry token usage (OpenTelemetry's
``gen_ai.usage.input_tokens``, Langfuse's ``langfuse.observation.usage_details``): proof that
token counts arrived.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.common import free_port, wait_for_port

_stats: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "bytes": 0, "usage": 0})
_lock = threading.Lock()
USAGE_MARKERS = (b"gen_ai.usage.input_tokens", b"langfuse.observation.usage_details")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        segment = self.path.strip("/").split("/", 1)[0]
        with _lock:
            entry = _stats[segment]
            entry["requests"] += 1
            entry["bytes"] += len(body)
            entry["usage"] += max(body.count(marker) for marker in USAGE_MARKERS)
        self._answer(b"{}")

    def do_GET(self) -> None:
        with _lock:
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
