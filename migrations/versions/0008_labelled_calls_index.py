"""A partial index on the calls that carry labels

The rollup notes the label names of the calls it reads for the dashboard's filters. Most calls
carry no labels; with this index (``started_at`` of the calls whose ``labels`` are not ``{}``)
that read visits only the calls that do, instead of every call of the span a second time. A call
without labels costs the writer only the check of the index's condition.

Revision ID: 0008_labelled_calls_index
Revises: 0007_usage_slices
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_labelled_calls_index"
down_revision: str | None = "0007_usage_slices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_api_calls_labelled_started_at",
        "api_calls",
        ["started_at"],
        postgresql_where=sa.text("labels <> '{}'::jsonb"),
        sqlite_where=sa.text("labels <> '{}'"),
    )


def downgrade() -> None:
    op.drop_index("ix_api_calls_labelled_started_at", table_name="api_calls")
