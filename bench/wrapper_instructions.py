"""Instructions per call added by the monitor, counted by valgrind's callgrind: a steady measure.

Wall-clock figures on a shared machine move by more than the tens of microseconds the wrapper's
target is about; instruction counts do not. The upstream is in-process (no sockets), as in
``bench.wrapper_overhead``'s in-process table. In one process run under callgrind, each case runs
a loop of N calls and then a loop of 0 calls between markers (a call of ``os.getppid``, at which
callgrind dumps its counts: ``--dump-before=getppid``), each loop followed by the recorder's
flush; a call costs (N-call loop - 0-call loop) / N, so imports, start-up and warm-up are not
counted. Every thread is counted, the writer's SQLite inserts included, and shown apart: the
writer sleeps while the calls run (its batch is not full, its interval long) and writes their
records, one batch a loop, when flushed, between markers of its own. The heap is collected
before each case and start-up's objects frozen, so a collection does not fall in one loop and
not the other.

Instructions are not time: the microseconds printed are an estimate, converting the added
instructions at the rate of the bare client (instructions per call under callgrind over CPU
microseconds per call of the same loop run without valgrind, in the same run).

``--baseline-tree DIR`` counts and times the monitor of another checkout (``git archive main |
tar -x -C DIR``) in the same run, for a before/after; the native runs of the two trees take
turns.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODULES = ("httpx", "httpx2")
KINDS = ("body", "stream")
#: The calls each case makes before it is measured: pools, caches and first-use paths.
WARM_CALLS = 30
_DUMP = re.compile(r"\.(\d+)$")


def _cases(names: str, modes: str) -> list[tuple[str, str, str]]:
    return [
        (module, mode, kind)
        for module in names.split(",")
        for mode in modes.split(",")
        for kind in KINDS
    ]


# --- the driver: runs inside callgrind (or natively, for the clock) -------------------------------


def drive(tree: str | None, cases: list[tuple[str, str, str]], calls: int, rounds: int) -> None:
    """Run every case, bare then instrumented, each loop between markers; print the segments
    (and, natively, each segment's CPU seconds) as JSON on the last line of stdout."""
    if tree:
        sys.path.insert(0, tree)  # the monitor under test: before anything imports it
    import asyncio
    import importlib

    import httpx

    import monitor
    from bench.wrapper_overhead import async_calls, canned_upstream, sync_calls
    from monitor.recording.recorder import Recorder, set_recorder
    from monitor.recording.sql_sink import SqlSink

    segments: list[dict[str, Any]] = []
    clock = [time.process_time()]

    def mark(label: str | None) -> None:
        os.getppid()  # callgrind dumps here
        now = time.process_time()
        segments.append({"label": label, "cpu_s": now - clock[0]})
        clock[0] = now

    def loops(name: str, run: Callable[[int], None]) -> None:
        run(WARM_CALLS)
        monitor.flush(60)
        gc.collect()  # each case starts from the same heap: a collection is not left pending
        mark(None)
        for _ in range(rounds):
            for n in (calls, 0):
                run(n)  # the writer sleeps meanwhile: the batch is not full, the interval long
                mark(f"{name}|{n}|caller")
                monitor.flush(60)
                mark(f"{name}|{n}|writer")

    with tempfile.TemporaryDirectory() as tmp:
        # The writer writes when flushed, one batch a loop, whatever the speed.
        recorder = Recorder(
            SqlSink(f"sqlite:///{Path(tmp) / 'bench.db'}"),
            flush_interval_s=3600,
            batch_size=calls + WARM_CALLS + 1,
            max_queue=2 * (calls + WARM_CALLS),
        )
        set_recorder(recorder)
        loop = asyncio.new_event_loop()
        with httpx.Client(base_url="http://longcat.test", transport=canned_upstream(httpx)) as c:
            monitor.instrument(c)  # the writer's first batches (schema, caches) are not counted
            # Batches of a loop's size: their INSERTs (one set per shape of row, streamed or
            # not) are compiled and cached, as in a process that has been running a while.
            for stream in (False, True, False, True):
                sync_calls(c, calls, stream)
                monitor.flush(60)
        gc.collect()
        gc.freeze()  # what start-up made is not walked again by each loop's collections
        for module, mode, kind in cases:
            http = importlib.import_module(module)
            stream = kind == "stream"
            is_async = mode == "async"
            for instrumented in (False, True):
                upstream = canned_upstream(http, is_async=is_async)
                client_type = http.AsyncClient if is_async else http.Client
                client = client_type(base_url="http://longcat.test", transport=upstream)
                if instrumented:
                    monitor.instrument(client)
                name = f"{module}|{mode}|{kind}|{'instrumented' if instrumented else 'bare'}"
                if is_async:
                    loops(
                        name,
                        lambda n, c=client, s=stream: loop.run_until_complete(async_calls(c, n, s)),
                    )
                    loop.run_until_complete(client.aclose())
                else:
                    loops(name, lambda n, c=client, s=stream: sync_calls(c, n, s))
                    client.close()
        loop.close()
        recorder.shutdown(60)
        stats = recorder.stats()
    print(json.dumps({"segments": segments, "written": stats.written, "dropped": stats.dropped}))


# --- the parent: runs the driver under callgrind and natively, prints the table ------------------


def _driver_command(tree: str | None, cases: str, modes: str, calls: int, rounds: int) -> list[str]:
    command = [sys.executable, "-m", "bench.wrapper_instructions", "--driver"]
    command += ["--modules", cases, "--modes", modes, "--calls", str(calls)]
    command += ["--rounds", str(rounds)]
    return command + (["--tree", tree] if tree else [])


def _driver_output(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def counted(command: list[str]) -> tuple[list[str | None], list[float]]:
    """Run the driver ``command`` under callgrind: its segments' labels and the instructions
    of each (every thread), from one marker to the next."""
    out = Path(tempfile.mkdtemp(prefix="callgrind-"))
    try:
        valgrind = ["valgrind", "--tool=callgrind", "--dump-before=getppid"]
        valgrind += [f"--callgrind-out-file={out / 'cg'}"]
        labels = [s["label"] for s in _driver_output(valgrind + command)["segments"]]
        counts: dict[int, int] = {}
        for path in out.iterdir():
            found = _DUMP.search(path.name)
            if found:  # "cg" alone holds what ran after the last marker
                text = path.read_text(errors="replace")
                summary = re.search(r"^summary:\s*(\d+)", text, re.MULTILINE)
                counts[int(found.group(1))] = int(summary.group(1)) if summary else 0
        return labels, [float(counts.get(k, 0)) for k in range(1, len(labels) + 1)]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def per_call(labels: list[str | None], costs: list[float], calls: int) -> dict[str, float]:
    """``"case|part"`` → cost per call of that part (caller, writer), median over rounds of
    (N-call loop - 0-call loop) / N, from each marked segment's cost."""
    loops: dict[str, list[float]] = {}
    for label, cost in zip(labels, costs, strict=True):
        if label is not None:
            loops.setdefault(label, []).append(cost)
    figures = {}
    for label, full in loops.items():
        name, n, part = label.rsplit("|", 2)
        if n != "0":
            empty = loops[f"{name}|0|{part}"]
            figures[f"{name}|{part}"] = statistics.median(
                (a - b) / calls for a, b in zip(full, empty, strict=True)
            )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100, help="calls per loop under callgrind")
    parser.add_argument("--rounds", type=int, default=1, help="loops per case under callgrind")
    parser.add_argument("--clock-calls", type=int, default=1000, help="calls per native loop")
    parser.add_argument("--clock-rounds", type=int, default=5, help="native runs per tree")
    parser.add_argument("--modules", default="httpx,httpx2")
    parser.add_argument("--modes", default="sync", help="sync, async or sync,async")
    parser.add_argument("--baseline-tree", help="another checkout's monitor, counted too")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        drive(args.tree, _cases(args.modules, args.modes), args.calls, args.rounds)
        return
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind")
        return
    trees: list[tuple[str, str | None]] = [("this tree", None)]
    if args.baseline_tree:
        trees.insert(0, ("baseline", str(Path(args.baseline_tree).resolve())))
    started = time.monotonic()
    counts = {}
    for label, tree in trees:
        command = _driver_command(tree, args.modules, args.modes, args.calls, args.rounds)
        counts[label] = per_call(*counted(command), args.calls)
    # The clock: each tree's native run in turn, round after round, so drift hits both.
    timed: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    for _ in range(args.clock_rounds):
        for label, tree in trees:
            command = _driver_command(tree, args.modules, args.modes, args.clock_calls, 1)
            timed[label] += _driver_output(command)["segments"]
    clocks = {
        label: per_call(
            [s["label"] for s in segments], [s["cpu_s"] * 1e6 for s in segments], args.clock_calls
        )
        for label, segments in timed.items()
    }
    rows = []
    for module, mode, kind in _cases(args.modules, args.modes):
        case = f"{module}|{mode}|{kind}"
        for label, _ in trees:
            clock = clocks[label]
            bare_us = clock[f"{case}|bare|caller"] + clock[f"{case}|bare|writer"]
            wrapped_us = clock[f"{case}|instrumented|caller"] + clock[f"{case}|instrumented|writer"]
            figures = counts[label]
            bare = figures[f"{case}|bare|caller"] + figures[f"{case}|bare|writer"]
            caller = figures[f"{case}|instrumented|caller"] - figures[f"{case}|bare|caller"]
            writer = figures[f"{case}|instrumented|writer"] - figures[f"{case}|bare|writer"]
            wrapped = bare + caller + writer
            rate = bare / bare_us  # instructions per microsecond of the bare client
            rows.append(
                [
                    module,
                    mode,
                    kind,
                    label,
                    f"{bare:,.0f}",
                    f"{wrapped:,.0f}",
                    f"{wrapped / bare:.3f}x",
                    f"{wrapped - bare:+,.0f}",
                    f"{caller:+,.0f}",
                    f"{writer:+,.0f}",
                    f"{(wrapped - bare) / rate:+.1f}",
                    f"{bare_us:.0f}",
                    f"{wrapped_us - bare_us:+.1f}",
                ]
            )
    from bench.common import machine, print_table

    print_table(
        f"Instructions per call (callgrind, {args.calls} calls a loop, {args.rounds} loop(s), "
        f"upstream in-process, every thread counted, writer's SQLite inserts included; "
        f"{machine()}, {time.monotonic() - started:.0f} s). Target: <= 1.05x and <= 30 us. "
        f"'est. added us' is an ESTIMATE: added instructions at the bare client's rate "
        f"(its callgrind count over its CPU time per call without valgrind, median of "
        f"{args.clock_rounds} rounds x {args.clock_calls} calls, trees taking turns, this run); "
        "'clock' is CPU time per call of those native runs (noisy on a shared machine)",
        [
            "module",
            "mode",
            "kind",
            "monitor",
            "bare Ir",
            "instrumented Ir",
            "ratio",
            "added Ir",
            "caller",
            "writer",
            "est. added us",
            "clock bare us",
            "clock added us",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
