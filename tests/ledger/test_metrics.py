"""The scheduler's Prometheus endpoint: scraped over HTTP, parsed, compared with the database."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from waiting import eventually

from monitor.config import Settings, load_settings
from monitor.ledger.metrics import (
    CONTENT_TYPE,
    METRICS,
    PREFIX,
    MetricsServer,
    start_metrics_server,
)
from monitor.ledger.quota_day import quota_day
from monitor.ledger.rollup import run_rollup
from monitor.records import CallRecord
from monitor.store.billing import add_top_up, day_charges
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine, upgrade
from monitor.store.key_usage import key_usage_for_day
from monitor.store.keys import add_key

REPO = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-c", "from monitor.cli import main; main()")
LINE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def parse(text: str) -> tuple[Series, dict[str, str]]:
    """Samples by (name, labels), and each metric's TYPE; fails on any malformed line."""
    series: Series = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        match = LINE.match(line)
        assert match is not None, line
        labels = frozenset(
            (name, unescape(value)) for name, value in LABEL.findall(match["labels"] or "")
        )
        key = (match["name"], labels)
        assert key not in series, f"duplicate series {line}"
        series[key] = float(match["value"])
    return series, types


def call(key: str, hint: str, **fields: Any) -> CallRecord:
    values: dict[str, Any] = {
        "started_at": datetime.now(UTC) - timedelta(minutes=2),
        "api": "openai",
        "endpoint": "/openai/v1/chat/completions",
        "key_id": key,
        "key_hint": hint,
        "model": "LongCat-Flash-Chat",
        "status_code": 200,
        "input_tokens": 300,
        "output_tokens": 100,
        "total_tokens": 400,
    }
    values.update(fields)
    return CallRecord(**values)


@pytest.fixture
def seeded(database_url: str, midday: datetime) -> Iterator[tuple[Engine, Settings]]:
    settings = load_settings(database_url=database_url)
    engine = make_engine(database_url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        add_key(
            conn,
            key_id="k_search",
            name="search",
            hint="9f3c",
            quota=5_000_000,
            effective_from=quota_day(now, settings.tz),
            now=now,
        )
        records = [call("k_search", "9f3c") for _ in range(7)]
        records += [
            call("k_search", "9f3c", error_type="rate_limit", status_code=429, total_tokens=None),
            call("k_search", "9f3c", error_type="rate_limit", status_code=429, total_tokens=None),
            call("k_search", "9f3c", error_type="server_error", status_code=500),
            call("k_other", 'a"b\\', total_tokens=12_345),  # an unregistered key, odd hint
        ]
        insert_calls(conn, records)
        add_top_up(conn, quota_day(now, settings.tz), 12_500_000_000, "USD", now=now)
    run_rollup(engine, settings)
    yield engine, settings
    engine.dispose()


@pytest.fixture
def server(seeded: tuple[Engine, Settings]) -> Iterator[MetricsServer]:
    engine, settings = seeded
    server = start_metrics_server(engine, settings, "127.0.0.1", 0)
    yield server
    server.shutdown()


def test_metrics_match_the_database(seeded: tuple[Engine, Settings], server: MetricsServer) -> None:
    engine, settings = seeded
    response = httpx.get(f"http://127.0.0.1:{server.port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    series, types = parse(response.text)
    assert types == {PREFIX + name: "gauge" for name in METRICS}

    today = quota_day(datetime.now(UTC), settings.tz)
    with engine.connect() as conn:
        usages = key_usage_for_day(conn, today, default_quota=settings.default_quota)
        charges = day_charges(conn, today)
    assert {u.name for u in usages} == {"search", None}
    for u in usages:
        key = {("key", u.name or "(unnamed)"), ("key_hint", u.hint or ""), ("key_id", u.key_id)}
        got = {
            (name.removeprefix(PREFIX), frozenset(labels - key)): value
            for (name, labels), value in series.items()
            if key <= labels
        }
        expected = {
            ("today_requests", frozenset()): u.requests,
            ("today_tokens", frozenset({("kind", "input")})): u.input_tokens,
            ("today_tokens", frozenset({("kind", "output")})): u.output_tokens,
            ("today_tokens", frozenset({("kind", "total")})): u.total_tokens,
            ("quota_tokens", frozenset()): u.quota,
            ("quota_used_tokens", frozenset()): u.total_tokens,
            ("quota_used_ratio", frozenset()): pytest.approx(u.used_fraction),
            ("today_cost", frozenset({("currency", "USD")})): charges[u.key_id].cost / 10**9,
            ("today_unpriced_tokens", frozenset()): charges[u.key_id].unpriced_tokens,
        } | {
            ("today_errors", frozenset({("error_class", cls)})): n
            for cls, n in u.errors_by_class.items()
        }
        assert got == expected

    search = {
        name.removeprefix(PREFIX): value
        for (name, labels), value in series.items()
        if ("key", "search") in labels and not {k for k, _ in labels} & {"kind", "error_class"}
    }
    assert search["today_requests"] == 10
    assert search["quota_tokens"] == 5_000_000
    assert search["quota_used_tokens"] == 7 * 400  # 429s and 5xx are not billed
    assert ("longcat_monitor_rollup_age_seconds", frozenset()) in series
    assert 0 < series[("longcat_monitor_quota_reset_seconds", frozenset())] <= 86_400
    assert series[("longcat_monitor_balance", frozenset({("currency", "USD")}))] == 12.5
    # The odd hint survives escaping: the parser above read it back whole.
    assert any(("key_hint", 'a"b\\') in labels for _, labels in series)


def test_other_paths_are_not_found(server: MetricsServer) -> None:
    assert httpx.get(f"http://127.0.0.1:{server.port}/").status_code == 404


def test_the_scheduler_command_serves_metrics(tmp_path: Path, recently: datetime) -> None:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        insert_calls(conn, [call("k_x", "wxyz", started_at=recently)])
    engine.dispose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [*CLI, "scheduler", "--interval", "0.5", "--metrics-port", str(port)],
        env=os.environ | {"MONITOR_DATABASE_URL": url},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def scraped() -> str:
            """The metrics page, once it shows the key's series."""
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            except httpx.TransportError:
                return ""
            return text if 'key_id="k_x"' in text else ""

        text = eventually(scraped, interval=0.2, what="the key's series on /metrics")
        series, _ = parse(text)
        requests = [v for (n, labels), v in series.items() if n.endswith("today_requests")]
        assert requests == [1]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in out


# --- the Grafana dashboard in deploy/ ------------------------------------------------------

GRAFANA_DASHBOARD = REPO / "deploy" / "grafana" / "longcat-monitor.json"
#: PromQL words that are neither metrics nor labels.
PROMQL_WORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool"})
PROMQL_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL query of the dashboard: its panels' targets and its query variables."""
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return queries


def names_in(query: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL query uses."""
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", query):
        labels.update(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", query):
        labels.update(name.strip() for name in grouping.split(",") if name.strip())
    if variable := re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query):
        return {variable[1]}, {variable[2]}
    bare = re.sub(r"\{[^}]*\}|\b(?:by|without)\s*\([^)]*\)|\"[^\"]*\"", " ", query)
    metrics = {
        m[0]
        for m in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", bare)
        if not m[2] and m[0].strip() not in PROMQL_WORDS
    }
    return {m.strip() for m in metrics}, labels


def test_every_grafana_query_names_a_metric_the_endpoint_serves(server: MetricsServer) -> None:
    series, types = parse(httpx.get(f"http://127.0.0.1:{server.port}/metrics").text)
    served_labels: dict[str, set[str]] = {}
    for name, labels in series:
        served_labels.setdefault(name, set()).update(label for label, _ in labels)
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text(encoding="utf-8"))
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 9
    used = set()
    for query in queries:
        metrics, labels = names_in(query)
        assert metrics, f"no metric in {query!r}"
        assert metrics <= set(types), f"{query!r} names {metrics - set(types)}, not served"
        assert metrics <= set(served_labels), f"{query!r}: {metrics} has no sample here"
        known = set().union(*(served_labels[m] for m in metrics))
        assert labels <= known, f"{query!r} uses labels {labels - known} the metrics lack"
        used |= metrics
    # the three views: quota used per key, calls and errors by class, rollup age
    assert {
        PREFIX + "quota_used_ratio",
        PREFIX + "today_requests",
        PREFIX + "today_errors",
        PREFIX + "rollup_age_seconds",
    } <= used


def test_names_in_a_query() -> None:
    assert names_in('sum by (kind) (longcat_monitor_today_tokens{key=~"$key", kind!="total"})') == (
        {"longcat_monitor_today_tokens"},
        {"key", "kind"},
    )
    assert names_in("label_values(longcat_monitor_quota_tokens, key)") == (
        {"longcat_monitor_quota_tokens"},
        {"key"},
    )
