"""Shared pieces of the benchmarks: a simulator in its own process, timing, printing."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIMULATOR_CODE = """
import sys
from monitor.simulator.app import SimulatorOptions
from monitor.simulator.server import serve_forever
import logging
logging.disable(logging.CRITICAL)
import json
options = {"latency_ms": 0, "chunk_interval_ms": 0, **json.loads(sys.argv[2])}
serve_forever(port=int(sys.argv[1]), options=SimulatorOptions(**options))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


@contextmanager
def simulator_process(**options: Any) -> Iterator[str]:
    """The LongCat simulator with no artificial latency, in its own process (its CPU is not
    the client's); yields its base URL. ``options`` override ``SimulatorOptions`` fields, e.g.
    ``chunk_interval_ms=50``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SIMULATOR_CODE, str(port), json.dumps(options)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
