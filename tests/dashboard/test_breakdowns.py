"""Usage per client and reasoning/cached tokens per model, read from api_calls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from seeding import Seeded

from monitor.queries import (
    UNKNOWN_CLIENT,
    ClientUsage,
    Filters,
    ModelTokenParts,
    token_parts_by_model,
    usage_by_client,
)
from monitor.records import UNBILLED_ERROR_TYPES, CallRecord
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)


def test_usage_by_client_and_token_parts_by_model(
    database_url: str, make_call_record: Callable[..., CallRecord]
) -> None:
    def call(client: str | None, model: str, **fields: object) -> CallRecord:
        return make_call_record(started_at=NOW, client=client, model=model, **fields)

    records = [
        call("claude-code 2.1.328", "LongCat-2.0", input_tokens=100, output_tokens=50,
             total_tokens=150, cache_read_tokens=60, reasoning_tokens=20),
        call("claude-code 2.1.328", "LongCat-2.0", input_tokens=10, output_tokens=10,
             total_tokens=20, reasoning_tokens=5),
        call("openai-python 3.63.0", "LongCat-2.5-Preview", input_tokens=40, output_tokens=0,
             total_tokens=40),
        call("claude-code 2.1.328", "LongCat-2.0", status_code=402, error_type="quota_exhausted",
             input_tokens=None, output_tokens=None, total_tokens=None, usage_source="none"),
        call(None, "LongCat-2.0", input_tokens=1, output_tokens=1, total_tokens=2),
    ]  # fmt: skip
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            insert_calls(conn, records)
        filters = Filters(start=NOW.date(), end=NOW.date())
        with engine.connect() as conn:
            clients = usage_by_client(conn, filters, TZ)
            parts = token_parts_by_model(conn, filters, TZ)
    finally:
        engine.dispose()
    assert clients == [
        ClientUsage("claude-code 2.1.328", 3, 1, 170),
        ClientUsage("openai-python 3.63.0", 1, 0, 40),
        ClientUsage(UNKNOWN_CLIENT, 1, 0, 2),
    ]
    assert parts == [
        ModelTokenParts("LongCat-2.0", 111, 60, 61, 25),
        ModelTokenParts("LongCat-2.5-Preview", 40, 0, 0, 0),
    ]
    assert round(parts[0].reasoning_share, 3) == round(25 / 61, 3)
    assert parts[1].reasoning_share == 0.0


def test_the_usage_page_shows_clients_and_reasoning(
    seeded: Seeded, open_app: Callable[..., Any]
) -> None:
    app = open_app("views/history.py")
    headers = [h.value for h in app.subheader]
    assert "By client" in headers and "Reasoning and cached tokens, per model" in headers
    parts = next(d.value for d in app.dataframe if "% of output spent reasoning" in d.value)
    start, end = seeded.range_bounds(7)
    unbilled = ", ".join(f"'{t}'" for t in sorted(UNBILLED_ERROR_TYPES))
    billed_output = seeded.scalar(
        "SELECT COALESCE(SUM(output_tokens), 0) FROM api_calls WHERE started_at >= :start "
        f"AND started_at < :end AND key_id IS NOT NULL AND (error_type IS NULL OR error_type "
        f"NOT IN ({unbilled}))",
        start=start,
        end=end,
    )
    assert int(parts["output tokens"].sum()) == billed_output
