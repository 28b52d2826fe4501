"""An upstream on 127.0.0.1 that keeps the request target of every call it gets, and can answer
with a body of no stated length, sent in parts with pauses between them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from monitor.serving import LOCALHOST

#: How long the unframed answer waits for the test to release its second part.
RELEASE_TIMEOUT_S = 10.0


class RecordingUpstream:
    """``targets`` holds the raw request target (path and query) of each call, as received.

    Every call gets a small JSON 200 with a ``Content-Length``, unless ``unframed`` is set: then
    the body has no length (it ends when the connection closes), its first two parts go at once
    (a moment apart: a relay may hold the latest part until the next one comes) and the rest
    once :attr:`release` is set.
    """

    def __init__(self, *, unframed: bool = False, rest_bytes: int = 0) -> None:
        self.targets: list[str] = []
        self.release = threading.Event()
        self.unframed = unframed
        self.rest_bytes = rest_bytes
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                self._answer()

            def _answer(self) -> None:
                upstream.targets.append(self.path)
                if upstream.unframed:
                    self.close_connection = True
                    self.wfile.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"connection: close\r\n\r\n" + FIRST_PART
                    )
                    self.wfile.flush()
                    time.sleep(0.2)
                    self.wfile.write(b"second part, ")
                    self.wfile.flush()
                    upstream.release.wait(RELEASE_TIMEOUT_S)
                    filler = b" " * upstream.rest_bytes
                    self.wfile.write(filler + b'"}')
                    return
                body = json.dumps({"object": "list", "data": []}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="upstream")

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self._server.server_address[1]}"

    @classmethod
    @contextmanager
    def running(cls, *, unframed: bool = False, rest_bytes: int = 0) -> Iterator[Self]:
        """The upstream, served on a thread until the block ends."""
        upstream = cls(unframed=unframed, rest_bytes=rest_bytes)
        upstream._thread.start()
        try:
            yield upstream
        finally:
            upstream.release.set()
            upstream._server.shutdown()
            upstream._server.server_close()
            upstream._thread.join(timeout=10)


FIRST_PART = b'{"id": "unframed", "text": "'
