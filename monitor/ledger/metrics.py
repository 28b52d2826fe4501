"""Prometheus metrics of today's usage, served from the scheduler process.

``longcat-monitor scheduler --metrics-port 9464`` answers ``GET /metrics`` in the Prometheus text
exposition format (version 0.0.4), written here by hand: no client library needed. Every figure
is read at scrape time from the rollups (``daily_usage``), so it is as fresh as the last tick and
costs the same however many calls there are. Keys are labelled by name, hint (last characters)
and fingerprint id, never by the key itself.

Today's figures are gauges, not counters: they fall back to zero when the quota day resets.

>>> server = start_metrics_server(engine, settings, "127.0.0.1", 9464)  # doctest: +SKIP
>>> server.shutdown()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Final

from monitor.ledger.billing import BalanceState
from monitor.ledger.charges import Charge
from monitor.ledger.prices import money
from monitor.ledger.quota_day import quota_day, time_until_reset
from monitor.ledger.rollup import ROLLUP_NAME
from monitor.safety import report_failure
from monitor.store.billing import balance_of, day_charges
from monitor.store.key_usage import KeyDayUsage, key_usage_for_day
from monitor.store.watermarks import get_watermark

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from monitor.config import Settings

logger = logging.getLogger("monitor.ledger.metrics")

DEFAULT_METRICS_PORT: Final = 9464
METRICS_PATH: Final = "/metrics"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "longcat_monitor_"
#: The ``key`` label of a key seen in traffic but never registered.
UNNAMED: Final = "(unnamed)"

#: name → help text; every metric is a gauge.
METRICS: Final = {
    "today_requests": "Calls (attempts) today, per key, as of the last rollup.",
    "today_errors": "Failed calls today, per key and error class.",
    "today_tokens": "Tokens today, per key and kind (input, output, total); billed calls only.",
    "quota_tokens": "The key's daily token quota today.",
    "quota_used_tokens": "Tokens counted toward the key's quota today.",
    "quota_used_ratio": "Fraction of the key's daily quota used today (1 = all of it).",
    "quota_reset_seconds": "Seconds until the quota day resets (midnight in MONITOR_QUOTA_TZ).",
    "rollup_age_seconds": "Seconds since the last rollup (absent before the first one).",
    "today_cost": "Estimated cost today past the free quota, per key, in units of the currency.",
    "today_unpriced_tokens": "Paid tokens today for models with no price (cost unknown), per key.",
    "balance": "Estimated prepaid balance left, in units of the currency (after a top-up only).",
    "pack_tokens_left": "Tokens left in each token pack, with its expiry day.",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of the exposition: a metric (without prefix), its labels and value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _key_labels(usage: KeyDayUsage) -> tuple[tuple[str, str], ...]:
    return (
        ("key", usage.name or UNNAMED),
        ("key_hint", usage.hint or ""),
        ("key_id", usage.key_id),
    )


def samples_for(
    usages: Iterable[KeyDayUsage],
    now: datetime,
    settings: Settings,
    rolled: datetime | None,
    *,
    charges: Mapping[str, Charge] | None = None,
    balance: BalanceState | None = None,
) -> list[Sample]:
    """The samples of one scrape, from the keys' usage and charges today (pure)."""
    out: list[Sample] = []
    currency = (("currency", settings.currency),)
    for u in usages:
        labels = _key_labels(u)
        if charges is not None:
            charge = charges.get(u.key_id, Charge())
            out.append(Sample("today_cost", (*labels, *currency), float(money(charge.cost))))
            out.append(Sample("today_unpriced_tokens", labels, charge.unpriced_tokens))
        out.append(Sample("today_requests", labels, u.requests))
        for error_class, n in sorted(u.errors_by_class.items()):
            out.append(Sample("today_errors", (*labels, ("error_class", error_class)), n))
        for kind, n in (("input", u.input_tokens), ("output", u.output_tokens)):
            out.append(Sample("today_tokens", (*labels, ("kind", kind)), n))
        out.append(Sample("today_tokens", (*labels, ("kind", "total")), u.total_tokens))
        out.append(Sample("quota_tokens", labels, u.quota))
        out.append(Sample("quota_used_tokens", labels, u.total_tokens))
        out.append(Sample("quota_used_ratio", labels, u.used_fraction))
    reset = time_until_reset(now, settings.tz).total_seconds()
    out.append(Sample("quota_reset_seconds", (), reset))
    if rolled is not None:
        out.append(Sample("rollup_age_seconds", (), max((now - rolled).total_seconds(), 0.0)))
    if balance is not None:
        if balance.last_top_up is not None:
            out.append(Sample("balance", currency, float(money(balance.balance))))
        for left in balance.packs:
            pack = (("pack", str(left.pack.id)), ("expires", left.pack.expires.isoformat()))
            out.append(Sample("pack_tokens_left", pack, left.tokens_left))
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(samples: Iterable[Sample]) -> str:
    """The text exposition of ``samples``: ``# HELP`` and ``# TYPE`` once per metric."""
    by_name: dict[str, list[Sample]] = {name: [] for name in METRICS}
    for sample in samples:
        by_name[sample.name].append(sample)
    lines: list[str] = []
    for name, group in by_name.items():
        full = PREFIX + name
        lines.append(f"# HELP {full} {METRICS[name]}")
        lines.append(f"# TYPE {full} gauge")
        for sample in group:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
            lines.append(
                f"{full}{{{labels}}} {_number(sample.value)}"
                if labels
                else f"{full} {_number(sample.value)}"
            )
    return "\n".join(lines) + "\n"


def scrape(conn: Connection, settings: Settings, now: datetime | None = None) -> str:
    """Today's metrics, read from the database, as exposition text."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    today = quota_day(now, settings.tz)
    usages = key_usage_for_day(conn, today, default_quota=settings.default_quota)
    rolled = get_watermark(conn, ROLLUP_NAME)
    charges = day_charges(conn, today)
    balance = balance_of(conn, settings.currency)
    return render(samples_for(usages, now, settings, rolled, charges=charges, balance=balance))


class MetricsServer(ThreadingHTTPServer):
    """An HTTP server answering ``GET /metrics``, running in a daemon thread."""

    daemon_threads = True

    def __init__(self, engine: Engine, settings: Settings, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.engine = engine
        self.settings = settings
        self.thread = threading.Thread(
            target=self.serve_forever, name="longcat-monitor-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def shutdown(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self.thread.is_alive():
            super().shutdown()
            self.thread.join()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self._reply(404, b"not found; metrics are at /metrics\n")
            return
        try:
            with self.server.engine.connect() as conn:
                body = scrape(conn, self.server.settings).encode()
        except Exception as exc:
            report_failure("read the metrics from the database", exc)
            self._reply(503, b"the monitor's database cannot be read\n")
            return
        self._reply(200, body, CONTENT_TYPE)

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("metrics %s", format % args)


def start_metrics_server(engine: Engine, settings: Settings, host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (port 0: any free port) until ``shutdown()``."""
    server = MetricsServer(engine, settings, host, port)
    server.thread.start()
    logger.info("metrics on http://%s:%d%s", host, server.port, METRICS_PATH)
    return server
