"""Latency the gateway adds per call on loopback, against the simulator with no artificial latency.

The simulator and the gateway (``longcat-monitor gateway``, recording to a throw-away SQLite file)
each run in their own process; this process is the client. Calls go alternately straight to the
simulator and through the gateway, over kept-alive connections, so both see the same machine load.
Printed: p50 and p99 of non-streamed calls, and of a stream's time to first byte, direct and
through the gateway, the difference and the ratio. Target: p50 added under 1 ms.

    .venv/bin/python -m bench.gateway_latency [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from bench.common import free_port, machine, simulator_process, wait_for_port
from monitor.rollup import percentile

KEY = "sk-bench-gateway-0000000000000000"
MESSAGES = [{"role": "user", "content": "Say something short."}]
GATEWAY_CODE = "from monitor.cli import main; main()"


@contextmanager
def gateway_process(upstream: str) -> Iterator[str]:
    """``longcat-monitor gateway`` to ``upstream`` in its own process; yields its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "MONITOR_DATABASE_URL": f"sqlite:///{Path(home) / 'bench.db'}",
        }
        command = [sys.executable, "-c", GATEWAY_CODE, "gateway", "--port", str(port)]
        proc = subprocess.Popen(
            [*command, "--upstream", upstream],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def timed_call(client: httpx2.Client, base: str) -> float:
    start = time.perf_counter()
    response = client.post(
        base + "/openai/v1/chat/completions",
        json={"model": "LongCat-Flash-Chat", "messages": MESSAGES},
        headers={"authorization": f"Bearer {KEY}"},
    )
    response.raise_for_status()
    return (time.perf_counter() - start) * 1000


def timed_first_byte(client: httpx2.Client, base: str) -> float:
    start = time.perf_counter()
    first = 0.0
    with client.stream(
        "POST",
        base + "/anthropic/v1/messages",
        json={"model": "LongCat-2.0", "max_tokens": 64, "messages": MESSAGES, "stream": True},
        headers={"x-api-key": KEY},
    ) as response:
        for chunk in response.iter_raw():
            if chunk and not first:
                first = (time.perf_counter() - start) * 1000
    return first


def measure(
    calls: int, direct: str, gateway: str, once: Callable[[httpx2.Client, str], float]
) -> tuple[list[float], list[float]]:
    with httpx2.Client() as to_sim, httpx2.Client() as to_gateway:
        for _ in range(min(100, calls)):  # warm up connections, imports, caches
            once(to_sim, direct)
            once(to_gateway, gateway)
        straight, through = [], []
        for _ in range(calls):
            straight.append(once(to_sim, direct))
            through.append(once(to_gateway, gateway))
    return straight, through


def report(title: str, straight: list[float], through: list[float]) -> None:
    print(f"\n{title} ({len(straight)} calls each)")
    print(f"{'':>10}  {'direct':>9}  {'gateway':>9}  {'added':>9}  {'ratio':>6}")
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        a = percentile(straight, q) or 0.0
        b = percentile(through, q) or 0.0
        print(f"{name:>10}  {a:7.3f}ms  {b:7.3f}ms  {b - a:7.3f}ms  {b / a:5.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls of each kind and route")
    args = parser.parse_args(argv)
    print(f"gateway latency on loopback; {machine()}")
    with simulator_process() as sim, gateway_process(sim) as gateway:
        report("non-streamed call, whole answer", *measure(args.calls, sim, gateway, timed_call))
        report(
            "streamed call, time to first byte",
            *measure(args.calls // 2, sim, gateway, timed_first_byte),
        )


if __name__ == "__main__":
    main()
