"""Latency the gateway adds per call on loopback, against the simulator with no artificial latency.

The simulator and the gateway (``longcat-monitor gateway``, recording to a throw-away SQLite file)
each run in their own process; this process is the client. Calls go in rounds, one straight to the
simulator and one through each gateway, over kept-alive connections, the order rotated every
round, so every path sees the same machine load and none always runs first. ``--baseline-tree``
adds a gateway run from another source tree (an earlier commit) to the same rounds. Printed: p50
and p99 of non-streamed calls, and of a stream's time to first byte, direct and through each
gateway, the difference and the ratio; the median of the per-round differences (steadier on a
busy machine); the CPU time per call of each gateway process and of this client per round.
Target: p50 added under 1 ms.

    .venv/bin/python -m bench.gateway_latency [--calls 2000] [--baseline-tree DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from bench.common import free_port, machine, median, simulator_process, wait_for_port
from monitor.ledger.totals import percentile

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
def gateway_process(upstream: str, source_tree: Path | None = None) -> Iterator[Gateway]:
    """``longcat-monitor gateway`` to ``upstream`` in its own process (its ``monitor`` package
    imported from ``source_tree`` when given, e.g. a checkout of an earlier commit)."""
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
            cwd=source_tree,
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
    """The latencies of one kind of call, direct and through each gateway, round by round."""

    straight: list[float] = field(default_factory=list)
    through: dict[str, list[float]] = field(default_factory=dict)
    gateway_cpu_s: dict[str, float] = field(default_factory=dict)
    client_cpu_s: float = 0.0


def measure(
    calls: int,
    direct: str,
    gateways: dict[str, Gateway],
    once: Callable[[httpx2.Client, str], float],
) -> Run:
    """Each round calls the simulator and every gateway once, the order rotated every round."""
    run = Run(through={name: [] for name in gateways})
    routes: list[tuple[str | None, str]] = [(None, direct)]
    routes += [(name, gateway.base_url) for name, gateway in gateways.items()]
    clients = [httpx2.Client() for _ in routes]
    try:
        for _ in range(min(100, calls)):  # warm up connections, imports, caches
            for client, (_, url) in zip(clients, routes, strict=True):
                once(client, url)
        cpu_before = {name: gateway.cpu_seconds() for name, gateway in gateways.items()}
        client_cpu = time.process_time()
        pairs = list(zip(clients, routes, strict=True))
        for i in range(calls):
            shift = i % len(pairs)
            for client, (name, url) in pairs[shift:] + pairs[:shift]:
                (run.straight if name is None else run.through[name]).append(once(client, url))
        run.client_cpu_s = time.process_time() - client_cpu
        for name, gateway in gateways.items():
            before, after = cpu_before[name], gateway.cpu_seconds()
            if before is not None and after is not None:
                run.gateway_cpu_s[name] = after - before
    finally:
        for client in clients:
            client.close()
    return run


def report(title: str, run: Run) -> None:
    straight = run.straight
    calls = len(straight)
    print(f"\n{title} ({calls} calls each)")
    print(f"{'':>19}  {'direct':>9}  {'gateway':>9}  {'added':>9}  {'ratio':>6}")
    for name, through in run.through.items():
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            a = percentile(straight, q) or 0.0
            b = percentile(through, q) or 0.0
            print(f"{name:>14} {label}  {a:7.3f}ms  {b:7.3f}ms  {b - a:7.3f}ms  {b / a:5.2f}x")
    for name, through in run.through.items():
        paired = median([b - a for a, b in zip(straight, through, strict=True)])
        line = f"{name}: median of per-round differences {paired:.3f} ms"
        if name in run.gateway_cpu_s:
            line += f"; gateway process CPU per call {run.gateway_cpu_s[name] / calls * 1e6:.0f} us"
        print(line)
    print(f"client CPU per round: {run.client_cpu_s / calls * 1e6:.0f} us")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls of each kind and route")
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="also run a gateway from this source tree (e.g. `git archive` of an earlier commit), "
        "measured in the same rounds",
    )
    args = parser.parse_args(argv)
    print(f"gateway latency on loopback; {machine()}")
    with ExitStack() as stack:
        sim = stack.enter_context(simulator_process())
        gateways = {"gateway": stack.enter_context(gateway_process(sim))}
        if args.baseline_tree is not None:
            baseline = stack.enter_context(gateway_process(sim, args.baseline_tree.resolve()))
            gateways["baseline"] = baseline
        report("non-streamed call, whole answer", measure(args.calls, sim, gateways, timed_call))
        report(
            "streamed call, time to first byte",
            measure(args.calls // 2, sim, gateways, timed_first_byte),
        )


if __name__ == "__main__":
    main()
