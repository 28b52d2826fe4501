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
not the other. Every driver runs with the same hash seed (``HASH_SEED``), and without the
writer's idle WAL checkpoint (timed by the clock), so that two trees' counts differ by their code.

Instructions are not time: the microseconds printed are an estimate, converting the added
instructions at the rate of the bare client (instructions per call under callgrind over CPU
microseconds per call of the same loop run without valgrind, in the same run).

``--baseline-tree DIR`` counts and times the monitor of another checkout (``git archive main |
tar -x -C DIR``) in the same run, for a before/after; the native runs of the two trees take
turns. ``--baseline-rev REV`` makes that checkout itself, in a temporary folder. With a baseline,
each case's added instructions per call are checked against the baseline's: pass at most
``REGRESSION_LIMIT`` (1.10) times as many, the exit status 1 when a case misses.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODULES = ("httpx", "httpx2")
KINDS = ("body", "stream")
#: The calls each case makes before it is measured: pools, caches and first-use paths.
WARM_CALLS = 30
_DUMP = re.compile(r"\.(\d+)$")
#: Every driver hashes strings with this seed: a process's hash seed moves every count in it by
#: up to a percent (which dict slots collide), so both trees are counted with the same one.
HASH_SEED = "0"
#: The most a case's added instructions per call may be, as a multiple of the baseline tree's
#: (the previous release's): at most 10% more. Two copies of the same code come within 1% of each
#: other a case (docs/performance-log.md, 2026-12-05), so the limit needs no margin for noise.
REGRESSION_LIMIT = 1.10
#: The tags that name releases; the newest in the checkout's history is "the previous release".
RELEASE_TAGS = "v*"
#: Exit status when a case misses the limit, and when no check could be made.
MISSED, NO_CHECK = 1, 2


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

    class Sink(SqlSink):
        """The monitor's SQL sink without its idle WAL checkpoint, which the writer runs after a
        flush has returned once 30 s have passed: it would fall into whichever loop is running
        by then (a percent of a case's count), by the clock rather than by the code."""

        def idle(self) -> None:
            pass

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
            Sink(f"sqlite:///{Path(tmp) / 'bench.db'}"),
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
    environment = {**os.environ, "PYTHONHASHSEED": HASH_SEED}
    done = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, check=False
    )
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


# --- the regression check: this tree against the previous release --------------------------------


def regression(added: float, baseline_added: float) -> tuple[float, bool]:
    """This tree's added instructions per call over the baseline tree's, and whether that ratio
    is within :data:`REGRESSION_LIMIT`; a baseline that adds nothing cannot be met.

    >>> regression(220_000, 200_000)
    (1.1, True)
    >>> regression(221_000, 200_000)
    (1.105, False)
    """
    ratio = added / baseline_added if baseline_added > 0 else math.inf
    return ratio, ratio <= REGRESSION_LIMIT


def _git(repo: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = ["git", *arguments]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)


def previous_release(repo: Path = REPO) -> str | None:
    """The newest tag named ``v*`` (version order) in the history of ``repo``'s checked-out
    commit, or None when there is none."""
    listed = _git(repo, "tag", "--list", RELEASE_TAGS, "--merged", "HEAD", "--sort=-v:refname")
    tags = listed.stdout.split() if listed.returncode == 0 else []
    return tags[0] if tags else None


@contextmanager
def archived(rev: str, repo: Path = REPO) -> Iterator[Path]:
    """``git archive REV`` of ``repo``, unpacked into a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="wrapper-baseline-") as folder:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=repo, capture_output=True, check=True
        )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(folder, filter="data")
        yield Path(folder)


# --- the parent's report --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench wrapper-instructions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""\
The regression check: each case's added instructions per call (instrumented - bare, caller
and writer) in this tree over the baseline tree's; pass when at most {REGRESSION_LIMIT:.2f}x.
The baseline is the previous release: the newest tag named {RELEASE_TAGS} in this checkout's
history (version order). The project has no such tag yet, so give --baseline-rev REV (for
instance the last commit of main) or --baseline-tree DIR; without either, only this tree is
counted, with no pass/miss.

Exit status: 0 every case passes, 1 a case misses (the tables are printed either way), 2 no check
was made (no baseline, or valgrind missing).""",
    )
    parser.add_argument("--calls", type=int, default=100, help="calls per loop under callgrind")
    parser.add_argument("--rounds", type=int, default=1, help="loops per case under callgrind")
    parser.add_argument("--clock-calls", type=int, default=1000, help="calls per native loop")
    parser.add_argument("--clock-rounds", type=int, default=5, help="native runs per tree")
    parser.add_argument("--modules", default="httpx,httpx2")
    parser.add_argument("--modes", default="sync", help="sync, async or sync,async")
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument(
        "--baseline-tree", metavar="DIR", help="another checkout's monitor, counted too"
    )
    baseline.add_argument(
        "--baseline-rev",
        metavar="REV",
        help=f"git archive REV into a temporary folder as the baseline tree "
        f"(default: the newest {RELEASE_TAGS} tag, when there is one)",
    )
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.driver:
        drive(args.tree, _cases(args.modules, args.modes), args.calls, args.rounds)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind")
        return NO_CHECK
    if args.baseline_tree:
        tree = str(Path(args.baseline_tree).resolve())
        return _report(args, tree, f"--baseline-tree {tree}")
    rev, source = args.baseline_rev, "--baseline-rev"
    if rev is None:
        rev, source = previous_release(), f"the newest {RELEASE_TAGS} tag"
    if rev is None:
        print(
            f"No {RELEASE_TAGS} tag in this checkout's history, so no previous release to check "
            "against: counting this tree alone, no pass/miss. Give --baseline-rev REV or "
            "--baseline-tree DIR for the check."
        )
        _report(args, None, "")
        return NO_CHECK
    commit = _git(REPO, "rev-parse", "--verify", "--quiet", "--short", f"{rev}^{{commit}}")
    if commit.returncode != 0:
        parser.error(f"{rev} ({source}) is not a commit of {REPO}")
    with archived(rev) as folder:
        return _report(args, str(folder), f"{rev} ({source}, commit {commit.stdout.strip()})")


def _report(args: argparse.Namespace, baseline: str | None, described: str) -> int:
    """Count and time this tree and the baseline tree, if any, and print the table; then the
    regression check, when there is a baseline: ``MISSED`` when a case misses."""
    trees: list[tuple[str, str | None]] = [("this tree", None)]
    if baseline:
        trees.insert(0, ("baseline", baseline))
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
    added: dict[tuple[str, str], float] = {}  # (case, tree) -> added instructions per call
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
            added[case, label] = caller + writer
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
    if baseline is None:
        return 0
    return _check(_cases(args.modules, args.modes), added, described)


def _check(
    cases: list[tuple[str, str, str]], added: dict[tuple[str, str], float], described: str
) -> int:
    """Print each case's regression check, this tree's added instructions over the baseline's;
    ``MISSED`` when a case misses."""
    from bench.common import print_table

    verdicts, rows = [], []
    for module, mode, kind in cases:
        case = f"{module}|{mode}|{kind}"
        ours, theirs = added[case, "this tree"], added[case, "baseline"]
        ratio, passed = regression(ours, theirs)
        verdicts.append(passed)
        row = [module, mode, kind, f"{theirs:+,.0f}", f"{ours:+,.0f}", f"{ratio:.3f}x"]
        rows.append([*row, "pass" if passed else "miss"])
    print_table(
        f"Added instructions per call, this tree over the baseline {described}. "
        f"Target: <= {REGRESSION_LIMIT:.2f}x",
        ["module", "mode", "kind", "baseline added Ir", "this tree added Ir", "ratio", "verdict"],
        rows,
    )
    missed = verdicts.count(False)
    print(f"\n{'miss' if missed else 'pass'}: {missed} of {len(verdicts)} case(s) above the target")
    return MISSED if missed else 0


if __name__ == "__main__":
    sys.exit(main())
