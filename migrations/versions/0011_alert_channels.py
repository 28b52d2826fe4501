"""Alert channels: one delivery row per (alert, channel), silences, and each key's own channels

``alert_deliveries`` takes over the claim, retry and sent columns of ``alert_ledger``: an alert is
decided once (``alert_ledger``, unique per key, day, rule and threshold) and delivered once per
channel (``alert_deliveries``, unique per alert and channel), so a channel that fails is retried
without sending again to the others. The alerts still in flight move to an ``email`` delivery row
with their state; the ledger row keeps its decision (``routed``, ``skipped``, ``no_recipients``).
``alert_ledger`` gains the alert's severity and its versioned document (what chat channels and
the signed webhook are rendered from). ``alert_silences`` holds the silences; ``keys.channels`` a
key's own notification URLs.

Revision ID: 0011_alert_channels
Revises: 0010_cost
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_alert_channels"
down_revision: str | None = "0010_cost"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_MOVED = ("claimed_by", "claimed_at", "attempts", "next_attempt_at", "last_error", "sent_at")
_IN_FLIGHT = ("pending", "sending", "retrying", "sent", "failed")


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "alert_deliveries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("alert_id", _ID, nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_at", when, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", when, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("sent_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert_ledger.id"],
            name="fk_alert_deliveries_alert_id_alert_ledger",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("alert_id", "channel", name="uq_alert_deliveries_alert_id_channel"),
    )
    op.create_index(
        "ix_alert_deliveries_status_next_attempt_at",
        "alert_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_table(
        "alert_silences",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(), nullable=True),
        sa.Column("starts_at", when, nullable=False),
        sa.Column("ends_at", when, nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_silences"),
    )
    op.create_index("ix_alert_silences_ends_at", "alert_silences", ["ends_at"])
    op.add_column("keys", sa.Column("channels", _JSON, nullable=True))

    op.add_column("alert_ledger", sa.Column("severity", sa.String(16), nullable=True))
    op.add_column("alert_ledger", sa.Column("document", _JSON, nullable=True))
    statuses = ", ".join(f"'{s}'" for s in _IN_FLIGHT)
    op.execute(
        "INSERT INTO alert_deliveries (alert_id, channel, target, status, created_at, updated_at,"
        " claimed_by, claimed_at, attempts, next_attempt_at, last_error, sent_at)"
        " SELECT id, 'email', 'e-mail (SMTP)', status, created_at, updated_at, claimed_by,"
        " claimed_at, attempts, next_attempt_at, last_error, sent_at"
        f" FROM alert_ledger WHERE status IN ({statuses})"
    )
    op.execute(f"UPDATE alert_ledger SET status = 'routed' WHERE status IN ({statuses})")
    with op.batch_alter_table("alert_ledger") as batch:
        batch.drop_index("ix_alert_ledger_status_next_attempt_at")
        for name in _MOVED:
            batch.drop_column(name)


def downgrade() -> None:
    when = sa.DateTime(timezone=True)
    with op.batch_alter_table("alert_ledger") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(), nullable=True))
        batch.add_column(sa.Column("claimed_at", when, nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", when, nullable=True))
        batch.add_column(sa.Column("last_error", sa.String(500), nullable=True))
        batch.add_column(sa.Column("sent_at", when, nullable=True))
        batch.drop_column("document")
        batch.drop_column("severity")
    # Back to one state per alert: its e-mail delivery's, else that of its first channel.
    op.execute(
        "UPDATE alert_ledger SET"
        " status = COALESCE((SELECT d.status FROM alert_deliveries d WHERE d.alert_id ="
        " alert_ledger.id ORDER BY d.channel <> 'email', d.id LIMIT 1), 'skipped'),"
        " attempts = COALESCE((SELECT d.attempts FROM alert_deliveries d WHERE d.alert_id ="
        " alert_ledger.id ORDER BY d.channel <> 'email', d.id LIMIT 1), 0),"
        " sent_at = (SELECT d.sent_at FROM alert_deliveries d WHERE d.alert_id ="
        " alert_ledger.id ORDER BY d.channel <> 'email', d.id LIMIT 1)"
        " WHERE status = 'routed'"
    )
    op.execute(
        "UPDATE alert_ledger SET status = 'skipped' WHERE status NOT IN"
        " ('pending', 'sending', 'retrying', 'sent', 'failed', 'skipped', 'no_recipients')"
    )
    op.create_index(
        "ix_alert_ledger_status_next_attempt_at", "alert_ledger", ["status", "next_attempt_at"]
    )
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("channels")
    op.drop_index("ix_alert_silences_ends_at", table_name="alert_silences")
    op.drop_table("alert_silences")
    op.drop_index("ix_alert_deliveries_status_next_attempt_at", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
