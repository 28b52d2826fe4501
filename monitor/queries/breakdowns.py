"""Where the tokens went: per tool that made the calls, and per model how much of the output was
reasoning and how much of the input came from the cache.

Neither the client nor reasoning and cached tokens per model are kept by the hourly rollups, so
both read ``api_calls`` in the filters' range, grouped in the database: one row per client or
model whatever the number of calls, on the ``started_at`` index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Final

from sqlalchemy import Connection, Integer, case, func, or_, select

from monitor.queries.filters import Filters
from monitor.records import UNBILLED_ERROR_TYPES
from monitor.store.models import ApiCall

#: The client shown for calls that sent no User-Agent (and calls stored before it was kept).
UNKNOWN_CLIENT: Final = "(unknown)"


@dataclass(frozen=True, slots=True)
class ClientUsage:
    """One tool's calls in the range; tokens of billed calls only."""

    client: str
    requests: int
    errors: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class ModelTokenParts:
    """One model's billed tokens in the range, with the reasoning and cached parts."""

    model: str
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    reasoning_tokens: int

    @property
    def reasoning_share(self) -> float:
        """The share of output tokens spent reasoning (0 when there was no output)."""
        return self.reasoning_tokens / self.output_tokens if self.output_tokens else 0.0

    @property
    def cached_share(self) -> float:
        """The share of input tokens read from the cache."""
        return self.cache_read_tokens / self.input_tokens if self.input_tokens else 0.0


def _billed() -> Any:
    return or_(ApiCall.error_type.is_(None), ApiCall.error_type.not_in(UNBILLED_ERROR_TYPES))


def _billed_sum(column: Any) -> Any:
    return func.coalesce(func.sum(case((_billed(), func.coalesce(column, 0)), else_=0)), 0)


def _window(filters: Filters, tz: tzinfo) -> list[Any]:
    start, end = filters.utc_bounds(tz)
    c = ApiCall
    return [c.started_at >= start, c.started_at < end, c.key_id.is_not(None), *filters.clauses(c)]


def usage_by_client(conn: Connection, filters: Filters, tz: tzinfo) -> list[ClientUsage]:
    """Calls, errors and billed tokens per client in the range, most tokens first."""
    c = ApiCall
    errors = func.sum(case((c.error_type.is_not(None), 1), else_=0), type_=Integer)
    query = (
        select(c.client, func.count(), func.coalesce(errors, 0), _billed_sum(c.total_tokens))
        .where(*_window(filters, tz))
        .group_by(c.client)
    )
    rows = [
        ClientUsage(client or UNKNOWN_CLIENT, int(n), int(e), int(t))
        for client, n, e, t in conn.execute(query)
    ]
    return sorted(rows, key=lambda r: (-r.total_tokens, r.client))


def token_parts_by_model(conn: Connection, filters: Filters, tz: tzinfo) -> list[ModelTokenParts]:
    """Billed input (and its cached part) and output (and its reasoning part) per model."""
    c = ApiCall
    query = (
        select(
            c.model,
            _billed_sum(c.input_tokens),
            _billed_sum(c.cache_read_tokens),
            _billed_sum(c.output_tokens),
            _billed_sum(c.reasoning_tokens),
        )
        .where(*_window(filters, tz))
        .group_by(c.model)
        .order_by(c.model)
    )
    return [
        ModelTokenParts(model or "(not recorded)", int(i), int(cr), int(o), int(r))
        for model, i, cr, o, r in conn.execute(query)
    ]
