"""Pool channels: a pool's own notification URLs, as ``keys.channels`` holds a key's.

Revision ID: 0012_pool_channels
Revises: 0011_alert_channels
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012_pool_channels"
down_revision: str | None = "0011_alert_channels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("pools", sa.Column("channels", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pools") as batch:
        batch.drop_column("channels")
