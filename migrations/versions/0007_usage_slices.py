"""usage_slices: five-minute partial aggregates of api_calls, so a tick rereads minutes, not an hour

The rollup keeps, for the hours a tick may still change, one row per ``(5-minute slice, key,
model, stream)`` with the same figures and histograms as ``hourly_usage``. A tick
recomputes only the slices its late window reaches and rebuilds the hour from its slices. Rows
older than the hour holding the watermark, less the late window, are deleted by the rollup.
Nothing reads this table but the rollup; it starts empty and the next run fills it in.

Revision ID: 0007_usage_slices
Revises: 0006_dashboard_summaries
Create Date: 2025-01-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_usage_slices"
down_revision: str | None = "0006_dashboard_summaries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Written out rather than imported, so this revision stays what it is whatever later code does.
BUCKETS = 54
HISTOGRAMS = [
    f"{metric}_h{bucket:02d}" for metric in ("latency", "ttft") for bucket in range(BUCKETS)
]
FIGURES = ["latency_min_ms", "latency_max_ms", "ttft_min_ms", "ttft_max_ms"]
SUMS = [
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
]


def upgrade() -> None:
    op.create_table(
        "usage_slices",
        sa.Column("slice_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in SUMS],
        sa.Column(
            "errors_by_class",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        *[sa.Column(name, sa.Float(), nullable=True) for name in FIGURES],
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in HISTOGRAMS],
        sa.PrimaryKeyConstraint("slice_start", "key_id", "model", "stream", name="pk_usage_slices"),
    )


def downgrade() -> None:
    op.drop_table("usage_slices")
