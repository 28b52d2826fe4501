"""The gateway's optional quota guard: refuse locally a call whose key has no quota left today.

Where a key stands = its ``daily_usage`` row for today (as of the last rollup, re-read at most
every ``MONITOR_GATEWAY_GUARD_REFRESH_S`` seconds) + the billed tokens of the calls this gateway
made since that rollup's watermark, which the rollup has not counted yet. A key with no quota left
gets a 429 in LongCat's shape with the reset time, instead of a call upstream that would fail. Off
by default (``MONITOR_GATEWAY_QUOTA_GUARD=true``); if the database cannot be read, calls go through.

>>> guard = QuotaGuard(settings)  # doctest: +SKIP
>>> refusal = await guard.check(key_id)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Final

import anyio

from monitor.ledger.quota_day import day_bounds, next_reset, quota_day
from monitor.ledger.rollup import ROLLUP_NAME
from monitor.ledger.totals import CallFacts, billed_tokens
from monitor.records import CallRecord
from monitor.safety import report_failure

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from monitor.config import Settings

#: The gateway's own calls since the rollup's watermark are kept one by one, this many a key;
#: past that the older half is added up into per-minute buckets, so memory stays bounded while
#: no rollup runs (a call in the watermark's minute may then be counted twice, never missed).
RECENT_CALLS_PER_KEY: Final = 1_000
BUCKET_S: Final = 60
#: The most per-minute buckets kept over all keys (past it the oldest are forgotten).
MAX_BUCKETS: Final = 100_000

#: The quota day's zone named as LongCat's users know it.
TZ_NAMES = {"Asia/Shanghai": "Beijing time"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call was refused: the key's standing and when its quota comes back."""

    used: int
    quota: int
    day: date
    reset_at: datetime
    retry_after_s: int
    message: str


@dataclass(frozen=True, slots=True)
class _Snapshot:
    day: date
    read_at: float
    watermark: datetime | None
    used: dict[str, int]
    quotas: dict[str, int]


def describe_reset(reset_at: datetime, settings: Settings) -> str:
    """The reset instant as its owner reads it: ``2026-11-26 00:00 Beijing time (UTC+08:00)``."""
    local = reset_at.astimezone(settings.tz)
    zone = TZ_NAMES.get(settings.quota_tz, settings.quota_tz)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} {zone} (UTC{offset[:3]}:{offset[3:]})"


class QuotaGuard:
    """Decides, before a call goes upstream, whether its key still has quota today."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._owns_engine = engine is None
        self._clock = clock
        self._monotonic = monotonic
        self._snapshot: _Snapshot | None = None
        #: per key: its recent billed calls (start, tokens), and older ones per minute bucket
        self._recent: dict[str, list[tuple[datetime, int]]] = {}
        self._buckets: dict[str, dict[int, int]] = {}
        self._bucket_count = 0
        self._lock: anyio.Lock | None = None

    def note(self, record: CallRecord) -> None:
        """Count a call the gateway made (called for every record it submits)."""
        if record.key_id is None or record.started_at is None:
            return
        facts = CallFacts(
            started_at=record.started_at,
            key_id=record.key_id,
            error_type=record.error_type,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            total_tokens=record.total_tokens,
        )
        tokens = billed_tokens(facts)
        if not tokens:
            return
        recent = self._recent.setdefault(record.key_id, [])
        recent.append((record.started_at, tokens))
        if len(recent) > RECENT_CALLS_PER_KEY:
            half = len(recent) // 2
            self._fold(record.key_id, recent[:half])
            del recent[:half]

    def _fold(self, key_id: str, calls: list[tuple[datetime, int]]) -> None:
        buckets = self._buckets.setdefault(key_id, {})
        for started_at, tokens in calls:
            bucket = int(started_at.timestamp()) // BUCKET_S
            if bucket not in buckets:
                if self._bucket_count >= MAX_BUCKETS:
                    self._forget(min(min(b) for b in self._buckets.values() if b) + 1)
                self._bucket_count += 1
            buckets[bucket] = buckets.get(bucket, 0) + tokens

    def _forget(self, first_bucket: int, since: datetime | None = None) -> None:
        """Forget the buckets before ``first_bucket`` (and the recent calls before ``since``)."""
        for key_id in list(self._buckets):
            buckets = self._buckets[key_id]
            for bucket in [b for b in buckets if b < first_bucket]:
                del buckets[bucket]
                self._bucket_count -= 1
            if not buckets:
                del self._buckets[key_id]
        if since is not None:
            for key_id in list(self._recent):
                kept = [call for call in self._recent[key_id] if call[0] >= since]
                if kept:
                    self._recent[key_id] = kept
                else:
                    del self._recent[key_id]

    async def check(self, key_id: str | None) -> Refusal | None:
        """A :class:`Refusal` when ``key_id`` has used its whole quota today, else ``None``."""
        if key_id is None:
            return None
        now = self._clock()
        snapshot = await self._current(now)
        if snapshot is None:
            return None
        used = snapshot.used.get(key_id, 0) + self._own_since(snapshot, key_id)
        quota = snapshot.quotas.get(key_id, self._settings.default_quota)
        if used < quota:
            return None
        reset_at = next_reset(now, self._settings.tz)
        retry_after = max(1, math.ceil((reset_at - now).total_seconds()))
        message = (
            f"Daily token quota used up: {used:,} of {quota:,} tokens on {snapshot.day} "
            f"(counted by longcat-monitor's gateway). The quota resets at "
            f"{describe_reset(reset_at, self._settings)}, in {_duration(retry_after)}."
        )
        return Refusal(used, quota, snapshot.day, reset_at, retry_after, message)

    def close(self) -> None:
        if self._engine is not None and self._owns_engine:
            self._engine.dispose()
            self._engine = None

    def _own_since(self, snapshot: _Snapshot, key_id: str) -> int:
        """The billed tokens of this gateway's calls with ``key_id`` on the snapshot's day that
        the rollup has not counted yet."""
        start, end = day_bounds(snapshot.day, self._settings.tz)
        if snapshot.watermark is not None and snapshot.watermark > start:
            start = snapshot.watermark
        recent = sum(tokens for at, tokens in self._recent.get(key_id, ()) if start <= at < end)
        first, last = int(start.timestamp()) // BUCKET_S, int(end.timestamp()) // BUCKET_S
        return recent + sum(
            tokens for b, tokens in self._buckets.get(key_id, {}).items() if first <= b < last
        )

    async def _current(self, now: datetime) -> _Snapshot | None:
        day = quota_day(now, self._settings.tz)
        if self._fresh(day):
            return self._snapshot
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if not self._fresh(day):
                try:
                    snapshot = await anyio.to_thread.run_sync(self._read, day)
                except Exception as exc:
                    report_failure("reading today's usage for the quota guard", exc)
                    return self._snapshot if self._snapshot and self._snapshot.day == day else None
                self._snapshot = snapshot
                # the rollup has counted the calls before its watermark; earlier days are over
                since = day_bounds(day, self._settings.tz)[0]
                if snapshot.watermark is not None and snapshot.watermark > since:
                    since = snapshot.watermark
                self._forget(int(since.timestamp()) // BUCKET_S, since)
        return self._snapshot

    def _fresh(self, day: date) -> bool:
        snapshot = self._snapshot
        return (
            snapshot is not None
            and snapshot.day == day
            and self._monotonic() - snapshot.read_at < self._settings.gateway_guard_refresh_s
        )

    def _read(self, day: date) -> _Snapshot:
        from monitor.store.engine import make_engine
        from monitor.store.key_usage import key_usage_for_day
        from monitor.store.watermarks import get_watermark

        if self._engine is None:
            self._engine = make_engine(self._settings.database_url)
        read_at = self._monotonic()
        with self._engine.connect() as conn:
            watermark = get_watermark(conn, ROLLUP_NAME)
            rows = key_usage_for_day(conn, day, default_quota=self._settings.default_quota)
        return _Snapshot(
            day=day,
            read_at=read_at,
            watermark=watermark,
            used={row.key_id: row.total_tokens for row in rows},
            quotas={row.key_id: row.quota for row in rows},
        )


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"
