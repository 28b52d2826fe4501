"""The run of ``python -m bench peers``: the three parts, their tables and the report."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path

from bench.common import simulator_process
from bench.peers import gateways, wrappers
from bench.peers.report import (
    Table,
    load_average,
    machine_line,
    percentile,
    source_revision,
    versions,
    write,
)
from bench.peers.sink import sink_process
from bench.peers.worker import Worker

REPO = gateways.REPO
RESULTS = REPO / "bench" / "results"
LATENCY_MARGIN_MS = 5.0
MEMORY_FLAT_MB = 2.0
NOISE_US = 10.0  # below this an added CPU cost is within a loaded machine's round-to-round noise


def _serves(base: str, path: str) -> bool:
    """Whether the simulator routes ``path`` (a 404 says it does not)."""
    request = urllib.request.Request(base + path, data=b"{}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        return exc.code != 404
    return True


def _sink_stats(sink: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(sink + "/stats", timeout=10) as response:
        stats: dict[str, dict[str, int]] = json.load(response)
    return stats


# --- part 1 -------------------------------------------------------------------------------------


def part_wrappers(stack: ExitStack, args: argparse.Namespace, home: Path) -> Table:
    table = Table(
        f"In-process wrappers: process CPU per openai SDK call, median of {args.rounds} rounds "
        f"x {args.calls} calls (flush included)",
        [
            "call",
            "wrapper",
            "CPU/call us",
            "added us",
            "ratio to bare",
            "calls recorded with tokens",
            "tokens",
        ],
    )
    sim = stack.enter_context(simulator_process())
    kinds = []
    for kind in wrappers.KINDS:
        if _serves(sim, kind.path):
            kinds.append(kind)
        else:
            table.notes.append(
                f"'{kind.name}' skipped: the simulator has no POST {kind.path} (404)"
            )
    sink = stack.enter_context(sink_process())
    env = {"MONITOR_DATABASE_URL": f"sqlite:///{home / 'wrapper.db'}"}
    workers: dict[str, Worker] = {}
    patched: dict[str, dict[str, bool]] = {}
    for peer in wrappers.PEERS:
        worker = Worker("bench.peers.wrappers", peer, sim, sink, env=env)
        stack.callback(worker.close)
        try:
            worker.call("run", kind=kinds[0].name, calls=1)
        except RuntimeError as exc:
            table.notes.append(f"{wrappers.PEER_LABELS[peer]} not measured: {exc}")
            continue
        workers[peer] = worker
        patched[peer] = worker.call("patched")
    table.notes.append(
        "configured as each one's docs show: OpenTelemetry with an SDK TracerProvider, "
        "BatchSpanProcessor and OTLP/HTTP exporter (traces only: no MeterProvider, so its "
        "token histograms go to the no-op meter); Langfuse with its default batch exporter "
        "(OTLP/HTTP, gzip); both to a stub collector in another process"
    )

    def count(peer: str) -> dict[str, int] | None:
        if peer == "monitor":
            recorded: dict[str, int] = workers[peer].call("recorded")
            return recorded
        if peer == "bare":
            return None
        return _sink_stats(sink).get(peer, {"usage": 0, "tokens": 0})

    results = wrappers.measure(
        workers, kinds, args.calls, args.rounds, warmup=args.calls // 4, count=count
    )
    for result in results:
        _wrapper_rows(table, result, list(workers), patched)
    table.notes.append(
        "calls recorded with tokens: per kind over every block (warm-up included), from the "
        "monitor's rows in SQLite and the spans decoded at the sink, read after each block; a "
        "peer that does not record every call is left out of the target"
    )
    if "monitor" in workers:
        recorded = workers["monitor"].call("recorded")
        table.notes.append(
            f"monitor recorded {recorded['rows']} rows, {recorded['tokens']} tokens in SQLite"
        )
    stats = _sink_stats(sink)
    for peer in ("otel", "langfuse"):
        if peer in workers:
            got = stats.get(peer, {})
            table.notes.append(
                f"{wrappers.PEER_LABELS[peer]} exported {got.get('requests', 0)} requests, "
                f"{got.get('bytes', 0)} bytes, {got.get('spans', 0)} spans "
                f"({got.get('usage', 0)} with token usage, {got.get('tokens', 0)} tokens; "
                f"{got.get('undecoded', 0)} requests not OTLP traces), to the local sink"
            )
    return table


def _not_instrumented(peer: str) -> str:
    package = wrappers.PEER_PACKAGES[peer]
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        version = "(version unknown)"
    return f"not instrumented by {package} {version}"


def _wrapper_rows(
    table: Table,
    result: wrappers.KindResult,
    peers: list[str],
    patched: dict[str, dict[str, bool]],
) -> None:
    """The rows of one kind of call, and the target's verdict over the peers that record it."""
    bare = result.median("bare")
    left_out: list[str] = []
    for peer in peers:
        got = result.recorded[peer]
        median = result.median(peer)
        added = f"{result.added(peer) * 1e6:+.0f}" if peer != "bare" else ""
        ratio = f"{median / bare:.2f}x"
        if peer not in ("bare", "monitor") and not got.complete:
            recorded = f"{got.usage} of {got.calls}"
            if got.usage == 0 and not patched[peer][result.kind]:
                added, ratio = _not_instrumented(peer), ""
                reason = added
            else:
                reason = f"records {recorded} calls with tokens"
            left_out.append(f"{wrappers.PEER_LABELS[peer]} ({reason})")
        table.rows.append(
            [
                result.kind,
                wrappers.PEER_LABELS[peer],
                f"{median * 1e6:.0f}",
                added,
                ratio,
                "" if peer == "bare" else f"{got.usage} of {got.calls}",
                "" if peer == "bare" else str(got.tokens),
            ]
        )
    if "monitor" not in peers:
        return
    target = f"{result.kind}: target 'lowest added cost of all'"
    ours = result.added("monitor")
    mine = result.recorded["monitor"]
    rivals = {
        p: result.added(p)
        for p in peers
        if p not in ("bare", "monitor") and result.recorded[p].complete
    }
    if not mine.complete:
        verdict = f"miss (monitor recorded {mine.usage} of {mine.calls} calls with tokens)"
    elif not rivals:
        verdict = f"n/a (monitor {ours * 1e6:+.0f} us; no other peer records every call)"
    else:
        rival, theirs = min(rivals.items(), key=lambda item: item[1])
        ratio = (
            f"{theirs / ours:.1f}x ours"
            if ours >= NOISE_US / 1e6
            else f"ours within {NOISE_US:.0f} us of bare, no ratio"
        )
        verdict = (
            f"{'pass' if ours < theirs else 'miss'} (monitor {ours * 1e6:+.0f} us, next lowest "
            f"{wrappers.PEER_LABELS[rival]} {theirs * 1e6:+.0f} us: {ratio})"
        )
    if left_out:
        verdict += "; not compared: " + ", ".join(left_out)
    table.notes.append(f"{target}: {verdict}")
    tokens = {p: result.recorded[p].tokens for p in [*rivals, "monitor"]}
    if mine.complete and len(set(tokens.values())) > 1:
        table.notes.append(
            f"{result.kind}: the peers recorded different token totals for the same calls: "
            + ", ".join(f"{wrappers.PEER_LABELS[p]} {t}" for p, t in tokens.items())
        )


# --- parts 2 and 3 ------------------------------------------------------------------------------


def _start_targets(
    stack: ExitStack, home: Path, notes: list[str], need_slow: bool
) -> list[gateways.Target]:
    """The simulator (fast, and slow for part 3), this gateway and LiteLLM in front of each."""
    sim = stack.enter_context(simulator_process())
    slow = None
    if need_slow:
        slow = stack.enter_context(
            simulator_process(
                chunk_interval_ms=gateways.SLOW_INTERVAL_MS,
                words_per_chunk=1,
            )
        )
    path = "/openai/v1/chat/completions"
    targets = [
        gateways.Target("direct", sim + path, slow + path if slow else None),
    ]
    ours_url, ours_pid = stack.enter_context(gateways.monitor_gateway(sim, home / "gw"))
    ours = gateways.Target("monitor.gateway", ours_url + path, pid=ours_pid)
    if slow:
        slow_url, slow_pid = stack.enter_context(gateways.monitor_gateway(slow, home / "gw-slow"))
        ours.slow_url, ours.slow_pid = slow_url + path, slow_pid
    targets.append(ours)
    try:
        upstreams = {gateways.FAST_MODEL: sim}
        if slow:
            upstreams[gateways.SLOW_MODEL] = slow
        url, pid, log = stack.enter_context(gateways.litellm_proxy(upstreams, home))
    except (ImportError, RuntimeError) as exc:
        notes.append(f"LiteLLM proxy not measured: {exc}")
    else:
        notes.append(
            "LiteLLM records each call through a logging callback writing one JSON line a call "
            "(bench/peers/litellm_callback.py): its Postgres spend log needs the Prisma client, "
            "which litellm[proxy] does not install, and `prisma generate` downloads engine "
            "binaries at run time, which this machine cannot"
        )
        # one proxy serves both upstreams, chosen by model name
        lite = gateways.Target("litellm", url + "/v1/chat/completions", pid=pid, slow_pid=pid)
        lite.slow_url = lite.url
        stack.callback(_note_litellm_records, log, notes)
        targets.append(lite)
    return targets


def _note_litellm_records(log: Path, notes: list[str]) -> None:
    got = gateways.litellm_records(log)
    notes.append(
        f"LiteLLM recorded {got['rows']} calls through its logging callback "
        f"({got['with_tokens']} with token counts, {got['failed']} failed)"
    )


def _gateway_rows(home: Path) -> str:
    counts = []
    for name in ("gw", "gw-slow"):
        db = home / name / "gateway.db"
        if db.exists():
            with sqlite3.connect(db) as conn:
                rows, tokens = conn.execute(
                    "SELECT count(*), count(total_tokens) FROM api_calls"
                ).fetchone()
            counts.append(f"{rows} rows ({tokens} with tokens) in {name}")
    return "monitor.gateway recorded " + ", ".join(counts) + " in SQLite (so far)"


def part_gateways(load: Worker, targets: list[gateways.Target], args: argparse.Namespace) -> Table:
    table = Table(
        f"Gateways: latency on loopback (body: whole answer; stream: first byte), "
        f"{args.gateway_rounds} rounds, order rotated",
        [
            "clients",
            "call",
            "path",
            "p50 ms",
            "p99 ms",
            "added p50",
            "added p99",
            "calls/s",
            "gateway CPU/call us",
        ],
    )
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    cells = gateways.measure_gateways(load, targets, concurrencies, args.gateway_rounds, args.scale)
    for cell in cells:
        kind = "stream" if cell.stream else "body"
        direct = cell.latencies_ms["direct"]
        d50, d99 = percentile(direct, 0.5), percentile(direct, 0.99)
        added: dict[str, tuple[float, float, float]] = {}
        for target in targets:
            lat = cell.latencies_ms[target.name]
            p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
            rate = len(lat) / cell.wall_s[target.name]
            added[target.name] = (p50 - d50, p99 - d99, rate)
            cpu = cell.cpu_s.get(target.name, 0.0) / len(lat) * 1e6 if target.pid else None
            table.rows.append(
                [
                    str(cell.concurrency),
                    kind,
                    target.name,
                    f"{p50:.2f}",
                    f"{p99:.2f}",
                    "" if target.name == "direct" else f"{p50 - d50:+.2f}",
                    "" if target.name == "direct" else f"{p99 - d99:+.2f}",
                    f"{rate:.0f}",
                    "" if cpu is None else f"{cpu:.0f}",
                ]
            )
        if "litellm" in added:
            o50, o99, orate = added["monitor.gateway"]
            l50, l99, lrate = added["litellm"]
            ok = o50 < l50 and o99 < l99 and orate >= lrate
            table.notes.append(
                f"{cell.concurrency} clients, {kind}: target 'lower added p50 and p99 than "
                f"LiteLLM, throughput at least its equal': {'pass' if ok else 'miss'} "
                f"(added p50 {o50:+.2f} vs {l50:+.2f} ms, p99 {o99:+.2f} vs {l99:+.2f} ms, "
                f"{orate:.0f} vs {lrate:.0f} calls/s)"
            )
    return table


def part_load(load: Worker, targets: list[gateways.Target], args: argparse.Namespace) -> Table:
    interval = gateways.SLOW_INTERVAL_MS
    table = Table(
        f"Gateways under load: {args.streams} concurrent streams, a token every {interval:.0f} ms "
        f"for {gateways.SLOW_TOKENS * interval / 1000:.0f} s, {args.load_rounds} rounds",
        [
            "path",
            "first byte p50 ms",
            "p99 ms",
            "max ms",
            "clients > upstream p99 + 5 ms",
            "longest gap ms",
            f"stalls (gap > {gateways.STALL_MS:.0f} ms)",
            "events min",
            "RSS MiB before -> after rounds",
            "peak MiB",
            "CPU/call ms",
        ],
    )
    runs = gateways.measure_under_load(load, targets, args.streams, args.load_rounds)
    upstream = [
        c["first_ms"] for run in runs if run.name == "direct" for rnd in run.clients for c in rnd
    ]
    up99 = percentile(upstream, 0.99)
    for run in runs:
        clients = [c for rnd in run.clients for c in rnd]
        first = [c["first_ms"] for c in clients]
        late = sum(1 for f in first if f > up99 + LATENCY_MARGIN_MS)
        gaps = [c["max_gap_ms"] for c in clients]
        stalls = sum(1 for g in gaps if g > gateways.STALL_MS)
        proxied = run.name != "direct"
        table.rows.append(
            [
                run.name,
                f"{percentile(first, 0.5):.2f}",
                f"{percentile(first, 0.99):.2f}",
                f"{max(first):.2f}",
                f"{late} of {len(first)}",
                f"{max(gaps):.0f}",
                str(stalls),
                str(int(min(c["events"] for c in clients))),
                " -> ".join(f"{m:.0f}" for m in run.rss_mb) if proxied else "",
                f"{run.peak_mb:.0f}" if proxied else "",
                f"{run.cpu_s / len(clients) * 1000:.1f}" if proxied else "",
            ]
        )
        if proxied:
            p99 = percentile(first, 0.99)
            growth = run.rss_mb[-1] - run.rss_mb[1] if len(run.rss_mb) > 2 else None
            flat = (
                "n/a (one round)"
                if growth is None
                else (
                    f"{'pass' if growth <= MEMORY_FLAT_MB else 'miss'} ({growth:+.1f} MiB "
                    f"from round 1 to {len(run.rss_mb) - 1})"
                )
            )
            on_time = p99 <= up99 + LATENCY_MARGIN_MS
            table.notes.append(
                f"{run.name}: first byte p99 {p99:.2f} ms vs upstream p99 {up99:.2f} + "
                f"{LATENCY_MARGIN_MS:.0f} ms: {'pass' if on_time else 'miss'}"
                f"; stalls: {'pass' if stalls == 0 else 'miss'}; memory flat: {flat}"
            )
    return table


# --- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__)
    parser.epilog = "See bench/peers/__init__.py and bench/README.md for what each part measures."
    parser.add_argument("--parts", default="wrappers,gateways,load")
    parser.add_argument("--calls", type=int, default=200, help="wrappers: calls per block")
    parser.add_argument("--rounds", type=int, default=7, help="wrappers: rounds")
    parser.add_argument("--concurrency", default="1,16,64", help="gateways: clients")
    parser.add_argument("--scale", type=float, default=1.0, help="gateways: calls multiplier")
    parser.add_argument("--gateway-rounds", type=int, default=2)
    parser.add_argument("--streams", type=int, default=64, help="load: concurrent streams")
    parser.add_argument("--load-rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    command = "python -m bench peers" + (" -- " + " ".join(argv) if argv else "")
    started = time.monotonic()
    started_at = dt.datetime.now()
    load_before = load_average()
    header = [
        f"machine: {machine_line()}",
        f"longcat-monitor at {source_revision(REPO)}",
        f"peers: {versions()}",
    ]
    for line in header:
        print(line)
    print(f"load average (1 min) at the start: {load_before:.2f}")
    tables: list[Table] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if "wrappers" in parts:
            with ExitStack() as stack:
                tables.append(part_wrappers(stack, args, home))
                tables[-1].print()
        if parts & {"gateways", "load"}:
            notes: list[str] = []
            with ExitStack() as stack:
                (home / "gw").mkdir()
                (home / "gw-slow").mkdir()
                targets = _start_targets(stack, home, notes, need_slow="load" in parts)
                load = Worker("bench.peers.load")
                stack.callback(load.close)
                if "gateways" in parts:
                    tables.append(part_gateways(load, targets, args))
                    tables[-1].print()
                if "load" in parts:
                    tables.append(part_load(load, targets, args))
                    tables[-1].print()
                notes.append(_gateway_rows(home))
            # LiteLLM's count is taken when its proxy has stopped (the stack above)
            tables[-1].notes += notes
            for note in notes:
                print(f"  {note}")
    load_after = load_average()
    print(f"load average (1 min) at the end: {load_after:.2f}")
    header.insert(
        1, f"load average (1 min): {load_before:.2f} at the start, {load_after:.2f} at the end"
    )
    header.append(f"run time: {time.monotonic() - started:.0f} s")
    path = write(args.out, command, header, tables, started_at)
    print(f"\nreport written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
