"""Latency the gateway adds per call on loopback, against the simulator with no artificial latency.

The simulator and the gateway (``longcat-monitor gateway``, recording to a throw-away SQLite file)
each run in their own process; this process is the client. Calls go in pairs, one straight to the
simulator and one through the gateway, over kept-alive connections, the order swapped every pair,
so both paths see the same machine load and neither always runs first. Printed: p50 and p99 of
non-streamed calls, and of a stream's time to first byte, direct and through the gateway, the
difference and the ratio; the median of the per-pair differences (steadier on a busy machine);
and the CPU time per call of the gateway process and of this client. Target: p50 added under 1 ms.

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
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from bench.common import free_port, machine, median, simulator_process, wait_for_port
from monitor.rollup import percentile

KEY = "sk-bench-gateway-0000000000000000"
MESSAGES = [{"role": "user", "content": "Say something short."}]
GATEWAY_CODE = "from monitor.cli import main; main()"
GATEWAY_START_TIMEOUT_S = 90.0  # imports and migrations can take long on a busy machine


@dataclass
class Gateway:
    """A running gateway process."""

    base_url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the process so far (Linux only; else None)."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def gateway_process(upstream: str) -> Iterator[Gateway]:
    """``longcat-monitor gateway`` to ``upstream`` in its own process."""
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
            wait_for_port(port, timeout=GATEWAY_START_TIMEOUT_S)
            yield Gateway(f"http://127.0.0.1:{port}", proc.pid)
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


@dataclass
class Run:
    """The latencies of one kind of call, direct and through the gateway, in pairs."""

    straight: list[float] = field(default_factory=list)
    through: list[float] = field(default_factory=list)
    gateway_cpu_s: float | None = None
    client_cpu_s: float = 0.0


def measure(
    calls: int, direct: str, gateway: Gateway, once: Callable[[httpx2.Client, str], float]
) -> Run:
    run = Run()
    with httpx2.Client() as to_sim, httpx2.Client() as to_gateway:
        for _ in range(min(100, calls)):  # warm up connections, imports, caches
            once(to_sim, direct)
            once(to_gateway, gateway.base_url)
        gateway_cpu, client_cpu = gateway.cpu_seconds(), time.process_time()
        for i in range(calls):
            if i % 2:
                run.through.append(once(to_gateway, gateway.base_url))
                run.straight.append(once(to_sim, direct))
            else:
                run.straight.append(once(to_sim, direct))
                run.through.append(once(to_gateway, gateway.base_url))
        run.client_cpu_s = time.process_time() - client_cpu
        gateway_cpu_end = gateway.cpu_seconds()
        if gateway_cpu is not None and gateway_cpu_end is not None:
            run.gateway_cpu_s = gateway_cpu_end - gateway_cpu
    return run


def report(title: str, run: Run) -> None:
    straight, through = run.straight, run.through
    calls = len(straight)
    print(f"\n{title} ({calls} calls each)")
    print(f"{'':>10}  {'direct':>9}  {'gateway':>9}  {'added':>9}  {'ratio':>6}")
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        a = percentile(straight, q) or 0.0
        b = percentile(through, q) or 0.0
        print(f"{name:>10}  {a:7.3f}ms  {b:7.3f}ms  {b - a:7.3f}ms  {b / a:5.2f}x")
    paired = median([b - a for a, b in zip(straight, through, strict=True)])
    print(f"median of per-pair differences: {paired:.3f} ms")
    if run.gateway_cpu_s is not None:
        print(f"gateway process CPU per call: {run.gateway_cpu_s / calls * 1e6:.0f} us", end="; ")
    print(f"client CPU per pair of calls: {run.client_cpu_s / calls * 1e6:.0f} us")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls of each kind and route")
    args = parser.parse_args(argv)
    print(f"gateway latency on loopback; {machine()}")
    with simulator_process() as sim, gateway_process(sim) as gateway:
        report("non-streamed call, whole answer", measure(args.calls, sim, gateway, timed_call))
        report(
            "streamed call, time to first byte",
            measure(args.calls // 2, sim, gateway, timed_first_byte),
        )


if __name__ == "__main__":
    main()
