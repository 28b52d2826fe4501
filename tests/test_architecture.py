"""The layers of the tree hold: the import-linter contracts in pyproject.toml, no import cycle in
``monitor``, and a dashboard that reads the database only through ``monitor.queries``."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent

#: What the dashboard may import from the monitor: the public API, settings, the queries it reads
#: through, the quota day, and the alert pieces its "send test" form uses (per channel).
DASHBOARD_MAY_IMPORT = (
    "monitor.config",
    "monitor.dashboard",
    "monitor.queries",
    "monitor.ledger.quota_day",
    "monitor.alerts.delivery",
    "monitor.alerts.notify",
    "monitor.alerts.rules",
)


def dashboard_may_import(name: str) -> bool:
    """
    >>> dashboard_may_import("monitor.queries.today"), dashboard_may_import("monitor.store.calls")
    (True, False)
    """
    return name == "monitor" or any(
        name == allowed or name.startswith(allowed + ".") for allowed in DASHBOARD_MAY_IMPORT
    )


def test_import_linter_contracts_are_kept() -> None:
    # In its own process: lint-imports configures logging, which would silence the loggers of
    # the tests after this one.
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert linter is not None, "import-linter is not installed (it is in the dev extra)"
    run = subprocess.run(
        [linter, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_monitor() -> None:
    graph = grimp.build_graph("monitor", cache_dir=None)
    edges = {
        module: {m for m in graph.find_modules_directly_imported_by(module) if m in graph.modules}
        for module in graph.modules
    }
    # A package imports what its __init__ re-exports; that is not a cycle between parts.
    edges = {m: {i for i in imported if not m.startswith(i + ".")} for m, imported in edges.items()}
    assert _cycles(edges) == []


def _monitor_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name == "monitor" or name.startswith("monitor.")}


def test_dashboard_reads_only_through_queries() -> None:
    files = sorted((ROOT / "dashboard").rglob("*.py"))
    assert len(files) >= 8, "the dashboard's pages were not found"
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in _monitor_imports(path)
        if not dashboard_may_import(name)
    }
    assert not dashboard_may_import("monitor.store.engine")
    assert offending == set()


def test_dashboard_and_migrations_install_inside_the_monitor_package() -> None:
    import monitor.dashboard
    import monitor.migrations

    assert Path(os.path.realpath(next(iter(monitor.dashboard.__path__)))) == ROOT / "dashboard"
    assert Path(os.path.realpath(next(iter(monitor.migrations.__path__)))) == ROOT / "migrations"
