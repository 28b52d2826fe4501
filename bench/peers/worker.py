"""A benchmark worker in its own process, driven one JSON line at a time over its stdin/stdout.

Peers that patch a module for the whole process (Langfuse's openai, OpenTelemetry's global
tracer provider) or that must not share a CPU clock with the measuring process each get one.
The worker keeps the real stdout for its replies and points file descriptor 1 at stderr, so a
library that prints cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

Handler = Callable[..., Any]


class Worker:
    """The parent's side: ``Worker("bench.peers.wrappers", "otel", ...).call("run", calls=100)``."""

    def __init__(self, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.name = args[0] if args else module
        self._proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            text=True,
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def call(self, op: str, **args: Any) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited (code {self._proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.name}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def serve(handlers: dict[str, Handler]) -> None:
    """The worker's side: answer each request line with ``handlers[op](**args)`` until EOF."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            reply = {"result": handlers[op](**request)}
        except Exception as exc:  # reported to the parent, which stops the benchmark
            reply = {"error": f"{op}: {type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
