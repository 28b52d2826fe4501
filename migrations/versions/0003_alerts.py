"""alert_ledger: every alert decided, claimed, sent, retried or skipped

Revision ID: 0003_alerts
Revises: 0002_quota_ledger
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_alerts"
down_revision: str | None = "0002_quota_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "alert_ledger",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(), nullable=True),
        sa.Column("forecast_at", when, nullable=True),
        sa.Column(
            "recipients", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", when, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", when, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("sent_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_ledger"),
        sa.UniqueConstraint(
            "key_id", "day", "rule", "threshold", name="uq_alert_ledger_key_id_day_rule_threshold"
        ),
    )
    op.create_index(
        "ix_alert_ledger_status_next_attempt_at", "alert_ledger", ["status", "next_attempt_at"]
    )
    op.create_index("ix_alert_ledger_created_at", "alert_ledger", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_ledger_created_at", table_name="alert_ledger")
    op.drop_index("ix_alert_ledger_status_next_attempt_at", table_name="alert_ledger")
    op.drop_table("alert_ledger")
