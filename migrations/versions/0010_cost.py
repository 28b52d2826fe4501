"""What calls cost: the token split, cost columns, dated prices, pools, top-ups and token packs

- ``hourly_usage``, ``usage_slices`` and ``usage_by_hour`` gain the billed tokens split as they
  are priced: ``uncached_input_tokens`` and ``cached_input_tokens`` (output is ``output_tokens``).
- ``hourly_usage`` and ``daily_usage`` gain what the free quota covered (``free_tokens``), what it
  cost past it (``cost_nanos``: nano-units of the deployment's currency) and the paid tokens of
  models with no price (``unpriced_tokens``); ``daily_usage`` also ``paid_tokens`` and the
  ``currency`` it was priced in.
- ``prices``: a deployment's dated prices per model and currency, in nano-units per token, added
  to (or overriding) the published table shipped with the package.
- ``pools`` and ``pool_quotas`` (dated, like ``key_quotas``): keys sharing one free daily quota;
  ``keys.pool`` names a key's pool (``NULL``: the key is a pool of one).
- ``top_ups`` and ``token_packs``: what the team bought, for the estimated balance.

Existing rows get zeros. The rollup's watermarks are cleared, so its next run recomputes every
hour and day still held in ``api_calls`` and fills the new columns in (days whose raw calls were
dropped by retention keep zeros).

Revision ID: 0010_cost
Revises: 0009_call_client
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_cost"
down_revision: str | None = "0009_call_client"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPLIT = ["uncached_input_tokens", "cached_input_tokens"]
HOURLY_COST = ["free_tokens", "cost_nanos", "unpriced_tokens"]
DAILY_COST = ["free_tokens", "paid_tokens", "cost_nanos", "unpriced_tokens"]


def _counts(names: Sequence[str]) -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False, server_default="0") for name in names]


def upgrade() -> None:
    for table, names in (
        ("usage_slices", SPLIT),
        ("usage_by_hour", SPLIT),
        ("hourly_usage", [*SPLIT, *HOURLY_COST]),
    ):
        with op.batch_alter_table(table) as batch:
            for column in _counts(names):
                batch.add_column(column)
    with op.batch_alter_table("daily_usage") as batch:
        for column in _counts([*SPLIT, *DAILY_COST]):
            batch.add_column(column)
        batch.add_column(sa.Column("currency", sa.String(3), nullable=True))
    op.create_table(
        "prices",
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("uncached_input_nanos", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_nanos", sa.BigInteger(), nullable=False),
        sa.Column("output_nanos", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "currency", "effective_from", name="pk_prices"),
    )
    op.create_table(
        "pools",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("budget_nanos", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_pools"),
    )
    op.create_table(
        "pool_quotas",
        sa.Column("pool", sa.String(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("quota", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pool", "effective_from", name="pk_pool_quotas"),
    )
    with op.batch_alter_table("keys") as batch:
        batch.add_column(sa.Column("pool", sa.String(), nullable=True))
    op.create_table(
        "top_ups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_top_ups"),
    )
    op.create_table(
        "token_packs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("bought", sa.Date(), nullable=False),
        sa.Column("expires", sa.Date(), nullable=False),
        sa.Column("pool", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_token_packs"),
    )
    op.execute("DELETE FROM rollup_state WHERE name IN ('usage', 'usage_slices')")


def downgrade() -> None:
    op.drop_table("token_packs")
    op.drop_table("top_ups")
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("pool")
    op.drop_table("pool_quotas")
    op.drop_table("pools")
    op.drop_table("prices")
    with op.batch_alter_table("daily_usage") as batch:
        for name in ["currency", *DAILY_COST, *SPLIT]:
            batch.drop_column(name)
    for table, names in (
        ("hourly_usage", [*HOURLY_COST, *SPLIT]),
        ("usage_by_hour", SPLIT),
        ("usage_slices", SPLIT),
    ):
        with op.batch_alter_table(table) as batch:
            for name in reversed(names):
                batch.drop_column(name)
