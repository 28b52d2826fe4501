"""api_calls.client: which tool made each call

The short name and version of the tool, from the request's ``User-Agent``
(``claude-code 2.1.328``, ``openai-python 3.63.0``), so usage can be broken down by tool. Null
for calls stored before it, and for calls that sent no ``User-Agent``.

Revision ID: 0009_call_client
Revises: 0008_labelled_calls_index
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_call_client"
down_revision: str | None = "0008_labelled_calls_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_calls", sa.Column("client", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_calls") as batch:
        batch.drop_column("client")
