"""The dashboard's tables: recent failures, registered keys with their quota history, alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Final

from sqlalchemy import Connection, select

from monitor.queries.filters import Filters, key_labels
from monitor.store import alerts as ledger
from monitor.store.key_usage import key_usage_for_day
from monitor.store.keys import KeyInfo, QuotaChange, list_keys, quota_histories, quota_on
from monitor.store.models import ApiCall

#: Most failures the recent-failures table shows.
RECENT_FAILURES_LIMIT: Final = 100
#: Message snippets are cut to this many characters.
SNIPPET_CHARS: Final = 160


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed call, for the recent-failures table."""

    started_at: datetime
    key_id: str | None
    key_label: str
    api: str
    endpoint: str
    model: str | None
    stream: bool
    status_code: int | None
    error_type: str
    message: str
    request_id: str | None
    attempt: int


def recent_failures(
    conn: Connection, filters: Filters, tz: tzinfo, limit: int = RECENT_FAILURES_LIMIT
) -> list[Failure]:
    """The newest failed calls in the range, newest first (``started_at`` index, LIMIT)."""
    start, end = filters.utc_bounds(tz)
    c = ApiCall
    query = select(
        c.started_at,
        c.key_id,
        c.key_hint,
        c.api,
        c.endpoint,
        c.model,
        c.stream,
        c.status_code,
        c.error_type,
        c.error_message,
        c.request_id,
        c.attempt,
    ).where(
        c.started_at >= start, c.started_at < end, c.error_type.is_not(None), *filters.clauses(c)
    )
    rows = conn.execute(query.order_by(c.started_at.desc(), c.id.desc()).limit(limit)).all()
    labels = key_labels(conn)
    return [
        Failure(
            started_at=row.started_at,
            key_id=row.key_id,
            key_label=labels.get(row.key_id or "")
            or (f"unnamed …{row.key_hint}" if row.key_hint else "no key"),
            api=row.api,
            endpoint=row.endpoint,
            model=row.model,
            stream=bool(row.stream),
            status_code=row.status_code,
            error_type=row.error_type,
            message=_snippet(row.error_message),
            request_id=row.request_id,
            attempt=int(row.attempt),
        )
        for row in rows
    ]


def _snippet(message: str | None) -> str:
    text = " ".join((message or "").split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class KeyDetail:
    """A key as the Keys page shows it: registration, today's figures, quota history."""

    key_id: str
    name: str | None
    hint: str | None
    registered_at: datetime | None
    recipients: tuple[str, ...]
    quota_today: int
    used_today: int
    requests_today: int
    history: list[QuotaChange]


def key_details(conn: Connection, today: date, default_quota: int) -> list[KeyDetail]:
    """Registered keys by name, then unnamed keys seen in traffic (with the default quota)."""
    registered: dict[str, KeyInfo] = {info.key_id: info for info in list_keys(conn)}
    usages = key_usage_for_day(conn, today, default_quota=default_quota, include_idle=True)
    histories = quota_histories(conn, [usage.key_id for usage in usages])
    result = []
    for usage in usages:
        info = registered.get(usage.key_id)
        history = histories[usage.key_id]
        result.append(
            KeyDetail(
                key_id=usage.key_id,
                name=usage.name,
                hint=usage.hint,
                registered_at=info.created_at if info else None,
                recipients=usage.recipients,
                quota_today=quota_on(history, today, default_quota),
                used_today=usage.total_tokens,
                requests_today=usage.requests,
                history=history,
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class AlertsOverview:
    """The newest ledger rows (with key labels) and how many rows are in each status."""

    rows: list[ledger.AlertRow]
    key_labels: dict[str, str]
    status_counts: dict[str, int]


def alerts_overview(
    conn: Connection, key_ids: Sequence[str] = (), limit: int = 100
) -> AlertsOverview:
    """What was sent, failed, is retrying or was skipped, newest first."""
    rows = ledger.recent_alerts(conn, limit=limit if not key_ids else limit * 10)
    if key_ids:
        rows = [row for row in rows if row.key_id in key_ids][:limit]
    return AlertsOverview(rows, key_labels(conn), ledger.alert_status_counts(conn))
