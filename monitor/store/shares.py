"""Billed tokens of each rollup group split by something the rollups do not keep: the client
that made the calls, or the value of one of their labels, as they are priced (uncached input,
cached input, output). What the Costs page shares a group's charged cost out by
(:mod:`monitor.queries.costs`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from monitor.store.grouping import (
    BILLED,
    bin_sql,
    bind_params,
    calls_window,
    instant,
    split_sql,
)
from monitor.store.models import ROLLUP_KEY_CHARS

#: A group: ``(key_id, UTC hour, model, stream)``, as the rollups key ``hourly_usage``.
Group = tuple[str, datetime, str, bool]


def _value_sql(conn: Connection, label: str | None) -> str:
    """SQL for the value a call is shared out by; a label's name is the bound ``:label``."""
    if label is None:
        return "coalesce(client, '')"
    if conn.dialect.name == "postgresql":
        return "coalesce(labels ->> :label, '')"
    return "coalesce((SELECT value FROM json_each(labels) WHERE key = :label), '')"


def priced_tokens_by(
    conn: Connection,
    start: datetime,
    end: datetime,
    *,
    label: str | None = None,
    key_ids: Sequence[str] = (),
) -> dict[Group, dict[str, tuple[int, int, int]]]:
    """``(uncached input, cached input, output)`` tokens of billed calls per rollup group and
    per client (``label`` None) or per value of label ``label`` (``''``: none), for the calls
    started in ``[start, end)``; the input split is the ledger's own (:func:`split_sql`)."""
    calls = (
        f"SELECT key_id, {bin_sql(conn, 'started_at', timedelta(hours=1))} AS hour, "
        f"substr(coalesce(model, ''), 1, {ROLLUP_KEY_CHARS}) AS model, stream, "
        f"{_value_sql(conn, label)} AS value, {split_sql(conn)}, "
        "coalesce(output_tokens, 0) AS output FROM api_calls "
        f"WHERE {calls_window(start, end, bool(key_ids))} AND {BILLED}"
    )
    sql = (
        "SELECT key_id, hour, model, stream, value, sum(uncached_input), sum(cached_input), "
        f"sum(output) FROM ({calls}) AS priced GROUP BY key_id, hour, model, stream, value"
    )
    binds, values = bind_params(start, end, list(key_ids) if key_ids else None)
    if label is not None:
        values["label"] = label
    shares: dict[Group, dict[str, tuple[int, int, int]]] = {}
    for key_id, hour, model, stream, found, *parts in conn.execute(
        text(sql).bindparams(*binds), values
    ):
        group = (key_id, instant(hour), model, bool(stream))
        shares.setdefault(group, {})[found] = (int(parts[0]), int(parts[1]), int(parts[2]))
    return shares
