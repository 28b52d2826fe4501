"""Every query the dashboard runs, as typed functions returning plain data.

The Streamlit pages call these and hold no SQL. Charts read the rollups (``daily_usage``,
``hourly_usage``, and over all keys the summaries of :mod:`monitor.store.summaries`), so they stay
fast whatever the volume of ``api_calls``; tables of raw calls are bounded by the date range on
the ``started_at`` index and a LIMIT.
"""

from monitor.ledger.prices import format_money
from monitor.queries.alerting import AlertSetup, ChannelLine, alert_setup, silence, unsilence
from monitor.queries.breakdowns import (
    UNKNOWN_CLIENT,
    ClientUsage,
    ModelTokenParts,
    token_parts_by_model,
    usage_by_client,
)
from monitor.queries.costs import CostOverview, CostRow, CostShare, cost_overview, cost_shares
from monitor.queries.errors_latency import (
    ErrorPoint,
    ErrorTotals,
    LatencyPoint,
    error_series,
    error_totals,
    latency_series,
    latency_summary,
)
from monitor.queries.filters import (
    DatabaseState,
    DatabaseStatus,
    Filters,
    KeyChoice,
    RollupFreshness,
    database_status,
    endpoint_choices,
    key_choices,
    key_labels,
    model_choices,
    rollup_freshness,
)
from monitor.queries.series import (
    DayKeyTokens,
    HourRow,
    LabelBreakdown,
    LabelTokens,
    ModelTokens,
    bucket_for,
    daily_key_tokens,
    hourly_rows,
    label_breakdown,
    tokens_by_model,
)
from monitor.queries.tables import (
    AlertsOverview,
    Failure,
    KeyDetail,
    alerts_overview,
    key_details,
    recent_failures,
)
from monitor.queries.today import BurnPoint, KeyToday, TodayOverview, today_overview
from monitor.store.alerts import (
    FAILED,
    NO_RECIPIENTS,
    PENDING,
    RETRYING,
    SENDING,
    SENT,
    SILENCED,
    SKIPPED,
)
from monitor.store.engine import StoreError, make_engine

#: Delivery statuses, then those of alerts not delivered, in the order the Alerts page lists them.
ALERT_STATUSES = (SENT, PENDING, SENDING, RETRYING, FAILED, SILENCED, NO_RECIPIENTS, SKIPPED)

__all__ = [
    "ALERT_STATUSES",
    "RETRYING",
    "SKIPPED",
    "UNKNOWN_CLIENT",
    "AlertSetup",
    "AlertsOverview",
    "BurnPoint",
    "ChannelLine",
    "ClientUsage",
    "CostOverview",
    "CostRow",
    "CostShare",
    "DatabaseState",
    "DatabaseStatus",
    "DayKeyTokens",
    "ErrorPoint",
    "ErrorTotals",
    "Failure",
    "Filters",
    "HourRow",
    "KeyChoice",
    "KeyDetail",
    "KeyToday",
    "LabelBreakdown",
    "LabelTokens",
    "LatencyPoint",
    "ModelTokenParts",
    "ModelTokens",
    "RollupFreshness",
    "StoreError",
    "TodayOverview",
    "alert_setup",
    "alerts_overview",
    "bucket_for",
    "cost_overview",
    "cost_shares",
    "daily_key_tokens",
    "database_status",
    "endpoint_choices",
    "error_series",
    "error_totals",
    "format_money",
    "hourly_rows",
    "key_choices",
    "key_details",
    "key_labels",
    "label_breakdown",
    "latency_series",
    "latency_summary",
    "make_engine",
    "model_choices",
    "recent_failures",
    "rollup_freshness",
    "silence",
    "today_overview",
    "token_parts_by_model",
    "tokens_by_model",
    "unsilence",
    "usage_by_client",
]
