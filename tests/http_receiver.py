"""A real HTTP server on loopback that stands in for a chat service or a webhook receiver: it
keeps every request (path, headers, body) and can refuse the first N with ``500``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Receiver:
    host: str
    port: int
    fail_first: int = 0
    refused: int = 0
    received: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, scheme: str, path: str = "/hook") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"


@contextmanager
def running_receiver(*, fail_first: int = 0) -> Iterator[Receiver]:
    """Start a receiver on a free port; every request gets 200 once ``fail_first`` are refused."""
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = state["r"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                if receiver.refused < receiver.fail_first:
                    receiver.refused += 1
                    code = 500
                else:
                    receiver.received.append(
                        Request("POST", self.path, dict(self.headers.items()), body)
                    )
                    code = 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["r"] = Receiver("127.0.0.1", int(server.server_address[1]), fail_first=fail_first)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
