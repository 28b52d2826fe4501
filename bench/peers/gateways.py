"""Parts 2 and 3: this project's gateway and the LiteLLM proxy, each in its own process, in
front of the simulator; the load generator in another (:mod:`bench.peers.load`).

Part 2 runs, for each concurrency and kind of call, the same load straight at the simulator and
through each gateway, in rounds whose order rotates; added latency is a gateway's percentile
minus the direct one of the same cell. Part 3 sends 64 streams at once through a simulator that
sends a token every 50 ms for 5 s, and compares each client's first byte with the direct run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import free_port, wait_for_port
from bench.peers.load import KEY

REPO = Path(__file__).resolve().parents[2]
FAST_MODEL = "LongCat-Flash-Chat"
SLOW_MODEL = "LongCat-Flash-Thinking"  # its reasoning tokens bring a stream to 100 events
MESSAGES = [{"role": "user", "content": "Say something short."}]
START_TIMEOUT_S = 180.0  # LiteLLM imports for a long time on a busy machine
SLOW_TOKENS = 100
SLOW_INTERVAL_MS = 50.0
STALL_MS = 5 * SLOW_INTERVAL_MS


def body(stream: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": FAST_MODEL, "messages": MESSAGES, "max_tokens": 24}
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return payload


def slow_stream_body() -> dict[str, Any]:
    """A streamed request the simulator answers with exactly ``SLOW_TOKENS`` content events."""
    from monitor.simulator.responses import Api, plan_completion

    for take in range(1000):
        payload = {
            "model": SLOW_MODEL,
            "messages": [{"role": "user", "content": f"Tell me a long story, take {take}."}],
            "max_tokens": SLOW_TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if plan_completion(Api.OPENAI, payload).truncated:
            return payload
    raise RuntimeError("no request found that fills max_tokens")


@dataclass
class Target:
    """Where the load goes: straight to the simulator or through a gateway process tree."""

    name: str
    url: str  # the chat completions URL
    slow_url: str | None = None  # the same through the slow simulator (part 3)
    pid: int | None = None
    slow_pid: int | None = None


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as children:
                todo.extend(int(p) for p in children.read().split())
        except OSError:
            pass
    return pids


def tree_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process and its children (Linux /proc)."""
    total = 0.0
    for p in _tree(pid) if pid else []:
        try:
            with open(f"/proc/{p}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def tree_rss_mb(pid: int | None, field_name: str = "VmRSS") -> float:
    """Resident memory (or its peak, ``VmHWM``) of a process and its children, MiB."""
    total = 0
    for p in _tree(pid) if pid else []:
        try:
            with open(f"/proc/{p}/status") as status:
                for line in status:
                    if line.startswith(field_name + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@contextmanager
def _process(command: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[int]:
    """A server process, its output in ``log``; raises with the log's end if it never listens."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                wait_for_port(port, timeout=1.0)
                break
            except RuntimeError:
                continue
        else:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{Path(command[0]).name} did not start: {' / '.join(tail)}")
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def monitor_gateway(upstream: str, home: Path) -> Iterator[tuple[str, int]]:
    """``longcat-monitor gateway`` recording to an SQLite file in ``home``."""
    port = free_port()
    command = [sys.executable, "-c", "from monitor.cli import main; main()", "gateway"]
    command += ["--port", str(port), "--upstream", upstream]
    env = {"MONITOR_DATABASE_URL": f"sqlite:///{home / 'gateway.db'}"}
    with _process(command, port, env, home / f"gateway-{port}.log") as pid:
        yield f"http://127.0.0.1:{port}", pid


@contextmanager
def litellm_proxy(upstreams: dict[str, str], home: Path) -> Iterator[tuple[str, int, Path]]:
    """The LiteLLM proxy, one model per upstream (name -> simulator URL), every call written by
    :mod:`bench.peers.litellm_callback`; yields its URL, pid and the file of records."""
    port = free_port()
    config = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"openai/{name}",
                    "api_base": upstream + "/openai/v1",
                    "api_key": KEY,
                },
            }
            for name, upstream in upstreams.items()
        ],
        "litellm_settings": {"callbacks": ["peers_callback.recorder"]},
        "general_settings": {"master_key": KEY},
    }
    (home / "litellm.yaml").write_text(json.dumps(config))  # JSON is YAML
    (home / "peers_callback.py").write_text(
        "from bench.peers.litellm_callback import recorder  # noqa: F401\n"
    )
    log = home / "litellm-calls.jsonl"
    env = {
        "PEERS_LITELLM_LOG": str(log),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start
        "LITELLM_LOG": "ERROR",
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-c", "from litellm.proxy.proxy_cli import run_server; run_server()"]
    command += ["--config", str(home / "litellm.yaml"), "--port", str(port)]
    command += ["--host", "127.0.0.1", "--num_workers", "1", "--telemetry", "False"]
    with _process(command, port, env, home / "litellm.log") as pid:
        yield f"http://127.0.0.1:{port}", pid, log


def litellm_records(log: Path) -> dict[str, int]:
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {
        "rows": len(rows),
        "with_tokens": sum(1 for r in rows if r.get("total_tokens")),
        "failed": sum(1 for r in rows if not r["ok"]),
    }


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as home:
        yield Path(home)


# --- part 2 -------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One concurrency and kind: every target's latencies and wall time over the rounds."""

    concurrency: int
    stream: bool
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)


def calls_for(concurrency: int, scale: float) -> int:
    return int(max(240, 8 * concurrency) * scale)


def measure_gateways(
    load: Any, targets: list[Target], concurrencies: list[int], rounds: int, scale: float
) -> list[Cell]:
    for target in targets:  # connections, imports, caches
        for stream in (False, True):
            load.call("run", url=target.url, body=body(stream), concurrency=16, calls=64)
    cells = []
    for concurrency in concurrencies:
        for stream in (False, True):
            cell = Cell(concurrency, stream)
            per_round = max(concurrency, calls_for(concurrency, scale) // rounds)
            for r in range(rounds):
                shift = r % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    cpu = tree_cpu_s(target.pid)
                    result = load.call(
                        "run",
                        url=target.url,
                        body=body(stream),
                        concurrency=concurrency,
                        calls=per_round,
                    )
                    cell.cpu_s[target.name] = (
                        cell.cpu_s.get(target.name, 0.0) + tree_cpu_s(target.pid) - cpu
                    )
                    cell.latencies_ms.setdefault(target.name, []).extend(result["latencies_ms"])
                    cell.wall_s[target.name] = cell.wall_s.get(target.name, 0.0) + result["wall_s"]
            cells.append(cell)
    return cells


# --- part 3 -------------------------------------------------------------------------------------


@dataclass
class LoadRun:
    name: str
    clients: list[list[dict[str, float]]] = field(default_factory=list)  # per round
    rss_mb: list[float] = field(default_factory=list)  # before, then after each round
    peak_mb: float = 0.0
    cpu_s: float = 0.0


def measure_under_load(load: Any, targets: list[Target], concurrency: int, rounds: int) -> list:
    payload = slow_stream_body()
    runs = {t.name: LoadRun(t.name) for t in targets}
    for target in targets:  # one stream each, to open the path
        load.call("streams", url=target.slow_url, body=payload, concurrency=1)
        runs[target.name].rss_mb.append(tree_rss_mb(target.slow_pid))
    for r in range(rounds):
        shift = r % len(targets)
        for target in targets[shift:] + targets[:shift]:
            run = runs[target.name]
            cpu = tree_cpu_s(target.slow_pid)
            clients = load.call(
                "streams", url=target.slow_url, body=payload, concurrency=concurrency
            )
            run.cpu_s += tree_cpu_s(target.slow_pid) - cpu
            run.clients.append(clients)
            run.rss_mb.append(tree_rss_mb(target.slow_pid))
            run.peak_mb = tree_rss_mb(target.slow_pid, "VmHWM")
    return list(runs.values())
