"""SQLAlchemy models: the tables the monitor writes and the dashboard reads.

The schema itself is created by the Alembic migrations in ``migrations/``, never by
``create_all()``; these classes describe it for queries and for ``alembic revision --autogenerate``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from monitor.ledger.histogram import column_names

#: Longest ``error_message`` snippet kept; longer messages are cut at insert time.
ERROR_MESSAGE_CHARS: Final = 500
#: Longest ``alert_ledger.last_error`` kept.
LAST_ERROR_CHARS: Final = 500
KEY_HINT_CHARS: Final = 8
#: The most characters of a model, endpoint or label name a rollup or summary row keys on: a
#: value of ``api_calls`` stored longer (by an older version) is cut, so no primary key grows
#: past Postgres's btree row limit (2,704 bytes).
ROLLUP_KEY_CHARS: Final = 200
EVENT_ID_CHARS: Final = 32


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on every dialect.

    Postgres keeps ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC
    (which also keeps their text form sortable) and come back with ``tzinfo=UTC`` attached.
    A naive value passed in is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        elif dialect.name != "sqlite":
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: ``id`` is a BIGINT on Postgres and the INTEGER rowid alias on SQLite (which autoincrements).
BigIntId = BigInteger().with_variant(Integer, "sqlite")
Labels = JSON().with_variant(JSONB(), "postgresql")

#: Named constraints, so migrations (and SQLite's batch mode) can refer to them by name.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every monitor table; ``Base.metadata`` is Alembic's target."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


#: The labels of a call that has none, as SQL per dialect (the condition of the partial index
#: on labelled calls: a query that repeats it reads only those).
NO_LABELS: Final = {"postgresql": "'{}'::jsonb", "sqlite": "'{}'"}


class ApiCall(Base):
    """One attempt at one API call (a stored :class:`monitor.records.CallRecord`).

    As described here on SQLite. On Postgres (migration 0004) the table is partitioned by UTC day
    on ``started_at``, so its primary key is ``(id, started_at)`` and the event id is unique
    together with ``started_at``; ``id`` still comes from one sequence and identifies a row.
    """

    __tablename__ = "api_calls"
    __table_args__ = (
        Index("ix_api_calls_started_at", "started_at"),
        Index("ix_api_calls_key_id_started_at", "key_id", "started_at"),
        Index(
            "ix_api_calls_failed_started_at",
            "started_at",
            postgresql_where=text("error_type IS NOT NULL"),
            sqlite_where=text("error_type IS NOT NULL"),
        ),
        Index(
            "ix_api_calls_labelled_started_at",
            "started_at",
            postgresql_where=text(f"labels <> {NO_LABELS['postgresql']}"),
            sqlite_where=text(f"labels <> {NO_LABELS['sqlite']}"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_CHARS), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_id: Mapped[str | None] = mapped_column(String())
    key_hint: Mapped[str | None] = mapped_column(String(KEY_HINT_CHARS))
    api: Mapped[str] = mapped_column(String())
    method: Mapped[str] = mapped_column(String())
    endpoint: Mapped[str] = mapped_column(String())
    model: Mapped[str | None] = mapped_column(String())
    stream: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String())
    error_code: Mapped[str | None] = mapped_column(String())
    error_message: Mapped[str | None] = mapped_column(String(ERROR_MESSAGE_CHARS))
    retry_after_s: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_read_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_write_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    usage_source: Mapped[str] = mapped_column(String())
    attempt: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String())
    client: Mapped[str | None] = mapped_column(String())
    labels: Mapped[dict[str, str]] = mapped_column(Labels)
    source: Mapped[str] = mapped_column(String())
    host: Mapped[str | None] = mapped_column(String())


# --- Keys, dated quotas and the usage rollups (migration 0002_quota_ledger) ---------------------

#: JSON documents (recipient lists, error counts by class): JSONB on Postgres.
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


class Key(Base):
    """A registered API key: its fingerprint and hint only, never the key itself."""

    __tablename__ = "keys"

    key_id: Mapped[str] = mapped_column(String(), primary_key=True)
    name: Mapped[str] = mapped_column(String(), unique=True)
    hint: Mapped[str] = mapped_column(String(KEY_HINT_CHARS))
    recipients: Mapped[list[str]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The pool whose quota the key shares (migration 0010); ``None``: a pool of one.
    pool: Mapped[str | None] = mapped_column(String())
    #: The key's own notification URLs (secrets: shown masked only). Migration 0011.
    channels: Mapped[list[str] | None] = mapped_column(JsonDoc, nullable=True)


class KeyQuota(Base):
    """One dated quota: in force from quota day ``effective_from`` until the next row's day."""

    __tablename__ = "key_quotas"

    key_id: Mapped[str] = mapped_column(String(), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, primary_key=True)
    quota: Mapped[int] = mapped_column(BigInteger)


class DailyUsage(Base):
    """One key's quota day, rolled up from ``api_calls`` (tokens: billed calls only)."""

    __tablename__ = "daily_usage"
    __table_args__ = (Index("ix_daily_usage_day", "day"),)

    key_id: Mapped[str] = mapped_column(String(), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    errors_by_class: Mapped[dict[str, int]] = mapped_column(JsonDoc)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    total_tokens: Mapped[int] = mapped_column(BigInteger)
    quota: Mapped[int] = mapped_column(BigInteger)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float)
    ttft_p50_ms: Mapped[float | None] = mapped_column(Float)
    ttft_p95_ms: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Added later (migration 0010), set by :mod:`monitor.ledger.costing`: tokens the free quota
    # covered, tokens paid for, their cost (nano-units of ``currency``), and the paid tokens of
    # models with no price (cost unknown).
    uncached_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    free_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    paid_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_nanos: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unpriced_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    currency: Mapped[str | None] = mapped_column(String(3))


#: The histogram columns of ``hourly_usage`` (migration 0005): counts per bucket of
#: :mod:`monitor.ledger.histogram`, from which hourly and daily percentiles are derived.
LATENCY_HISTOGRAM: Final = column_names("latency")
TTFT_HISTOGRAM: Final = column_names("ttft")


def _histogram_columns(server_default: str | None) -> list[Column[int]]:
    return [
        Column(name, BigInteger, nullable=False, server_default=server_default)
        for name in (*LATENCY_HISTOGRAM, *TTFT_HISTOGRAM)
    ]


#: The figures summed over calls that ``hourly_usage``, ``usage_slices`` and ``usage_by_hour``
#: each hold (a slice's add up into its hour's, every key's hour into ``usage_by_hour``).
SUMMED_FIGURES: Final = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
    "uncached_input_tokens",
    "cached_input_tokens",
)


class SummedFigures:
    """The :data:`SUMMED_FIGURES` columns, declared once for the tables that hold them."""

    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    total_tokens: Mapped[int] = mapped_column(BigInteger)
    # Added later (migration 0010): the billed input as priced (:mod:`monitor.ledger.prices`).
    uncached_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")


class HourlyUsage(SummedFigures, Base):
    """One key's UTC hour for one model and streaming mode, for the dashboard's charts.

    Besides the figures, each row keeps the exact minimum and maximum latency and time to first
    token, and their log-spaced histograms (``latency_h00`` …, ``ttft_h00`` …), so that the
    percentiles of any set of rows (a quota day, a week) can be derived by adding them up.
    """

    __tablename__ = "hourly_usage"
    # The histograms were added to the table later (migration 0005): rows from before hold 0.
    __table_args__ = (Index("ix_hourly_usage_hour", "hour"), *_histogram_columns("0"))

    key_id: Mapped[str] = mapped_column(String(), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    model: Mapped[str] = mapped_column(String(), primary_key=True)
    stream: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    errors_by_class: Mapped[dict[str, int]] = mapped_column(JsonDoc)
    # Added to the table later (migration 0005): rows from before hold 0.
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    latency_min_ms: Mapped[float | None] = mapped_column(Float)
    latency_max_ms: Mapped[float | None] = mapped_column(Float)
    ttft_min_ms: Mapped[float | None] = mapped_column(Float)
    ttft_max_ms: Mapped[float | None] = mapped_column(Float)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float)
    latency_p99_ms: Mapped[float | None] = mapped_column(Float)
    ttft_p50_ms: Mapped[float | None] = mapped_column(Float)
    ttft_p95_ms: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Added later (migration 0010): as in ``daily_usage``, for this hour's group.
    free_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_nanos: Mapped[int] = mapped_column(BigInteger, server_default="0")
    unpriced_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")


class UsageSlice(SummedFigures, Base):
    """Five minutes of one key's calls for one model and streaming mode (migration 0007).

    The same figures and histograms as :class:`HourlyUsage` (an hour is the sum of its slices),
    kept only for the hours a rollup tick may still change. Only the rollup reads it.
    """

    __tablename__ = "usage_slices"
    # Created with the table (migration 0007), without a default: every write sets them.
    __table_args__ = (*_histogram_columns(None),)

    slice_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(), primary_key=True)
    model: Mapped[str] = mapped_column(String(), primary_key=True)
    stream: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    errors_by_class: Mapped[dict[str, int]] = mapped_column(JsonDoc)
    latency_min_ms: Mapped[float | None] = mapped_column(Float)
    latency_max_ms: Mapped[float | None] = mapped_column(Float)
    ttft_min_ms: Mapped[float | None] = mapped_column(Float)
    ttft_max_ms: Mapped[float | None] = mapped_column(Float)


# --- Dashboard summaries (migration 0006_dashboard_summaries) -----------------------------------

#: The percentiles of ``hourly_usage`` that the dashboard combines as request-weighted means.
WEIGHTED_PERCENTILES: Final = (
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
)


def _weighted_percentile_columns() -> list[Column[Any]]:
    """Per percentile: the sum of ``value * requests`` and of ``requests`` where it is known."""
    columns: list[Column[Any]] = []
    for name in WEIGHTED_PERCENTILES:
        columns.append(Column(f"{name}_weighted", Float, nullable=True))
        columns.append(Column(f"{name}_weight", BigInteger, nullable=False, server_default="0"))
    return columns


class UsageByHour(SummedFigures, Base):
    """``hourly_usage`` summed over keys: one row per UTC hour, model and streaming mode.

    Kept by :func:`monitor.store.summaries.refresh_summaries` from ``hourly_usage`` alone, so a
    chart over all keys reads one row per hour, model and mode whatever the number of keys.
    """

    __tablename__ = "usage_by_hour"
    __table_args__ = tuple(_weighted_percentile_columns())

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    model: Mapped[str] = mapped_column(String(), primary_key=True)
    stream: Mapped[bool] = mapped_column(Boolean, primary_key=True)


class ErrorsByHour(Base):
    """Failed calls per UTC hour, model, streaming mode and error class, summed over keys."""

    __tablename__ = "errors_by_hour"

    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    model: Mapped[str] = mapped_column(String(), primary_key=True)
    stream: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    error_class: Mapped[str] = mapped_column(String(), primary_key=True)
    errors: Mapped[int] = mapped_column(BigInteger)


class SeenValue(Base):
    """A value seen in ``api_calls`` (an endpoint, a label name) and when it was last seen.

    Kept by the rollup from the calls it reads, so the dashboard's choices never scan raw calls.
    """

    __tablename__ = "seen_values"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(), primary_key=True)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class RollupState(Base):
    """How far a rollup job has read ``api_calls`` (by ``started_at``)."""

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(), primary_key=True)
    watermark: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertLedger(Base):
    """One alert decided for a key, with what it says; delivered once per channel.

    Unique per ``(key_id, day, rule, threshold)``, so however many processes decide the same
    alert, one row results. Its deliveries are :class:`AlertDelivery` rows. Statuses:
    :mod:`monitor.store.alerts`.
    """

    __tablename__ = "alert_ledger"
    __table_args__ = (
        UniqueConstraint("key_id", "day", "rule", "threshold"),
        Index("ix_alert_ledger_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String())
    day: Mapped[date] = mapped_column(Date)
    rule: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String())
    forecast_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    recipients: Mapped[list[str]] = mapped_column(JsonDoc)
    subject: Mapped[str] = mapped_column(String())
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    document: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertDelivery(Base):
    """One alert to one channel: claimed before it is sent, then sent, retried or failed.

    Unique per ``(alert_id, channel)``. ``target`` is the channel's URL masked (never a secret).
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel"),
        Index("ix_alert_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("alert_ledger.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String())
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(LAST_ERROR_CHARS))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AlertSilence(Base):
    """A silence: alerts of ``rule`` (``all``: every rule), for one key or all, until ``ends_at``.

    Silenced alerts are still decided and recorded, with the status ``silenced``.
    """

    __tablename__ = "alert_silences"
    __table_args__ = (Index("ix_alert_silences_ends_at", "ends_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str | None] = mapped_column(String())
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(String())


# --- Prices, pools and what was bought (migration 0010_cost) ------------------------------------


class Price(Base):
    """A deployment's price of ``model`` in ``currency`` from quota day ``effective_from`` on,
    in nano-units per token (:mod:`monitor.ledger.prices`); added to the published table."""

    __tablename__ = "prices"

    model: Mapped[str] = mapped_column(String(), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, primary_key=True)
    uncached_input_nanos: Mapped[int] = mapped_column(BigInteger)
    cached_input_nanos: Mapped[int] = mapped_column(BigInteger)
    output_nanos: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Pool(Base):
    """Keys sharing one free daily quota; ``budget_nanos``: its daily spending budget, if any."""

    __tablename__ = "pools"

    name: Mapped[str] = mapped_column(String(), primary_key=True)
    budget_nanos: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: the pool's own notification URLs (``pools set-channels``), as :attr:`Key.channels`
    channels: Mapped[list[str] | None] = mapped_column(JsonDoc, nullable=True)


class PoolQuota(Base):
    """One dated quota of a pool, as :class:`KeyQuota` is for a key."""

    __tablename__ = "pool_quotas"

    pool: Mapped[str] = mapped_column(String(), primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, primary_key=True)
    quota: Mapped[int] = mapped_column(BigInteger)


class TopUp(Base):
    """Money added to the account's prepaid balance on quota day ``day``."""

    __tablename__ = "top_ups"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    amount_nanos: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TokenPack(Base):
    """Tokens bought on ``bought``, usable until the end of quota day ``expires``; for one pool
    (or key name) or, with ``pool`` ``None``, for the whole account."""

    __tablename__ = "token_packs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    bought: Mapped[date] = mapped_column(Date)
    expires: Mapped[date] = mapped_column(Date)
    pool: Mapped[str | None] = mapped_column(String())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
