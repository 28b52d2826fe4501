"""Dashboard summaries: hourly usage summed over keys, errors by class as rows, values seen

``usage_by_hour`` holds ``hourly_usage`` summed over keys per UTC hour, model and streaming mode
(percentiles as ``sum(value * requests)`` and the requests they are known for); ``errors_by_hour``
the failed calls per hour, model, mode and error class; ``seen_values`` the endpoints and label
names seen in ``api_calls`` with when each was last seen. The rollup keeps them up to date
(``monitor.store.summaries``); here they are filled from what is already there. A partial index
on the failed calls bounds the dashboard's recent-failures read.

Revision ID: 0006_dashboard_summaries
Revises: 0005_rollup_histograms
Create Date: 2025-01-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_dashboard_summaries"
down_revision: str | None = "0005_rollup_histograms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Written out rather than imported, so this revision stays what it is whatever later code does.
SUMMED = [
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
]
PERCENTILES = ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms"]


def _hour_keys() -> list[sa.Column[object]]:
    return [
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("model", sa.String(), primary_key=True),
        sa.Column("stream", sa.Boolean(), primary_key=True),
    ]


def upgrade() -> None:
    op.create_table(
        "usage_by_hour",
        *_hour_keys(),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in SUMMED],
        *[
            column
            for name in PERCENTILES
            for column in (
                sa.Column(f"{name}_weighted", sa.Float(), nullable=True),
                sa.Column(f"{name}_weight", sa.BigInteger(), nullable=False, server_default="0"),
            )
        ],
        sa.PrimaryKeyConstraint("hour", "model", "stream", name="pk_usage_by_hour"),
    )
    op.create_table(
        "errors_by_hour",
        *_hour_keys(),
        sa.Column("error_class", sa.String(), primary_key=True),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "model", "stream", "error_class", name="pk_errors_by_hour"),
    )
    op.create_table(
        "seen_values",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(), primary_key=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value", name="pk_seen_values"),
    )
    op.create_index(
        "ix_api_calls_failed_started_at",
        "api_calls",
        ["started_at"],
        postgresql_where=sa.text("error_type IS NOT NULL"),
        sqlite_where=sa.text("error_type IS NOT NULL"),
    )
    _fill()


def _fill() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    each = "jsonb_each_text" if postgres else "json_each"
    weighted = ", ".join(
        f"sum({name} * requests), coalesce(sum(CASE WHEN {name} IS NOT NULL THEN requests END), 0)"
        for name in PERCENTILES
    )
    columns = ", ".join(
        [*SUMMED, *[f"{name}_{part}" for name in PERCENTILES for part in ("weighted", "weight")]]
    )
    sums = ", ".join(f"sum({name})" for name in SUMMED)
    op.execute(
        f"INSERT INTO usage_by_hour (hour, model, stream, {columns}) "
        f"SELECT hour, model, stream, {sums}, {weighted} FROM hourly_usage "
        "GROUP BY hour, model, stream"
    )
    op.execute(
        "INSERT INTO errors_by_hour (hour, model, stream, error_class, errors) "
        "SELECT h.hour, h.model, h.stream, e.key, sum(CAST(e.value AS BIGINT)) "
        f"FROM hourly_usage h, {each}(h.errors_by_class) AS e "
        "GROUP BY h.hour, h.model, h.stream, e.key"
    )
    op.execute(
        "INSERT INTO seen_values (kind, value, last_seen) "
        "SELECT 'endpoint', endpoint, max(started_at) FROM api_calls GROUP BY endpoint"
    )
    objects = " AND jsonb_typeof(c.labels) = 'object'" if postgres else ""
    op.execute(
        "INSERT INTO seen_values (kind, value, last_seen) "
        f"SELECT 'label', e.key, max(c.started_at) FROM api_calls c, {each}(c.labels) AS e "
        f"WHERE c.key_id IS NOT NULL{objects} GROUP BY e.key"
    )


def downgrade() -> None:
    op.drop_index("ix_api_calls_failed_started_at", table_name="api_calls")
    op.drop_table("seen_values")
    op.drop_table("errors_by_hour")
    op.drop_table("usage_by_hour")
