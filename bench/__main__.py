"""``python -m bench [NAME ...]``: run the benchmarks (all of them when no name is given).

Each prints its figures as ratios against a baseline measured in the same run; options after
``--`` go to a single named benchmark, e.g. ``python -m bench wrapper -- --calls 500``. The exit
status is the highest a benchmark returned (``wrapper-instructions`` returns 1 when a case misses
its regression check), 0 when none returned one.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "wrapper": "bench.wrapper_overhead",
    "wrapper-instructions": "bench.wrapper_instructions",
    "memory": "bench.memory",
    "recorder": "bench.recorder_throughput",
    "rollup": "bench.rollup",
    "dashboard": "bench.dashboard_queries",
    "gateway": "bench.gateway_latency",
    "peers": "bench.peers",
}


def main(argv: list[str]) -> int:
    names, options = argv, []
    if "--" in argv:
        split = argv.index("--")
        names, options = argv[:split], argv[split + 1 :]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    if options and len(names) != 1:
        print("options after -- need exactly one benchmark name")
        return 2
    status = 0
    for name in names or list(BENCHMARKS):
        try:
            module = importlib.import_module(BENCHMARKS[name])
        except ModuleNotFoundError as exc:
            print(f"{name}: not available ({exc})")
            continue
        print(f"== {name}", flush=True)
        status = max(status, module.main(options) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
