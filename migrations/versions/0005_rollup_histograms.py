"""hourly_usage: reasoning tokens, latency/TTFT minimum, maximum and log-spaced histograms

The rollup now aggregates in SQL and derives each quota day from its hourly rows; for that the
hourly rows carry everything a day needs: reasoning tokens, and the latency and time-to-first-token
histograms (54 integer columns each, :mod:`monitor.ledger.histogram`) with the exact minimum and
maximum.
Existing rows get zero counts; the next full recompute (or a tick reaching them) fills them in.

Revision ID: 0005_rollup_histograms
Revises: 0004_partition_api_calls
Create Date: 2025-01-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_rollup_histograms"
down_revision: str | None = "0004_partition_api_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Written out rather than imported, so this revision stays what it is whatever later code does.
BUCKETS = 54
HISTOGRAMS = [
    f"{metric}_h{bucket:02d}" for metric in ("latency", "ttft") for bucket in range(BUCKETS)
]
FIGURES = ["latency_min_ms", "latency_max_ms", "ttft_min_ms", "ttft_max_ms"]


def upgrade() -> None:
    with op.batch_alter_table("hourly_usage") as batch:
        batch.add_column(
            sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False, server_default="0")
        )
        for name in FIGURES:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        for name in HISTOGRAMS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("hourly_usage") as batch:
        for name in [*HISTOGRAMS, *FIGURES, "reasoning_tokens"]:
            batch.drop_column(name)
