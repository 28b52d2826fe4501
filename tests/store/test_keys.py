"""Registered keys and their dated quota history, on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine

from monitor.store.keys import (
    KeyStoreError,
    QuotaChange,
    add_key,
    get_key,
    list_keys,
    quota_for,
    quota_history,
    remove_key,
    require_key,
    set_quota,
    set_recipients,
)

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
D20, D25, D30 = date(2026, 11, 20), date(2026, 11, 25), date(2026, 11, 30)


def test_add_and_read_back(engine: Engine) -> None:
    with engine.begin() as conn:
        added = add_key(
            conn,
            key_id="k_1",
            name="search",
            hint="9f3c",
            now=NOW,
            recipients=["a@example.com", "b@example.com"],
            quota=500_000,
            effective_from=D20,
        )
    assert added.recipients == ("a@example.com", "b@example.com")
    assert added.created_at == NOW
    with engine.connect() as conn:
        assert get_key(conn, "k_1") == added
        assert require_key(conn, "search") == added
        assert list_keys(conn) == [added]
        assert quota_history(conn, "k_1") == [QuotaChange(D20, 500_000)]


def test_dated_quotas(engine: Engine) -> None:
    with engine.begin() as conn:
        add_key(
            conn,
            key_id="k_1",
            name="search",
            hint="9f3c",
            now=NOW,
            quota=500_000,
            effective_from=D20,
        )
        set_quota(conn, "k_1", 5_000_000, D25)
        set_quota(conn, "k_1", 1_000_000, D30)
        set_quota(conn, "k_1", 2_000_000, D30)  # the same day again replaces it
    with engine.connect() as conn:
        assert quota_for(conn, "k_1", date(2026, 11, 19), 42) == 42
        assert quota_for(conn, "k_1", D20, 42) == 500_000
        assert quota_for(conn, "k_1", date(2026, 11, 24), 42) == 500_000
        assert quota_for(conn, "k_1", D25, 42) == 5_000_000
        assert quota_for(conn, "k_1", date(2026, 11, 29), 42) == 5_000_000
        assert quota_for(conn, "k_1", date(2027, 1, 1), 42) == 2_000_000
        assert [q.quota for q in quota_history(conn, "k_1")] == [500_000, 5_000_000, 2_000_000]


def test_refusals(engine: Engine) -> None:
    with engine.begin() as conn:
        add_key(conn, key_id="k_1", name="search", hint="9f3c", now=NOW)
    with engine.begin() as conn, pytest.raises(KeyStoreError, match="already exists"):
        add_key(conn, key_id="k_2", name="search", hint="0000", now=NOW)
    with engine.begin() as conn, pytest.raises(KeyStoreError, match="registered as 'search'"):
        add_key(conn, key_id="k_1", name="other", hint="9f3c", now=NOW)
    with engine.begin() as conn, pytest.raises(KeyStoreError, match="positive"):
        set_quota(conn, "k_1", 0, D25)
    with engine.begin() as conn, pytest.raises(KeyStoreError, match="no key named"):
        require_key(conn, "nope")


def test_recipients_and_remove(engine: Engine) -> None:
    with engine.begin() as conn:
        add_key(
            conn, key_id="k_1", name="search", hint="9f3c", now=NOW, quota=10, effective_from=D20
        )
        set_recipients(conn, "k_1", ["ops@example.com"])
        assert require_key(conn, "search").recipients == ("ops@example.com",)
        remove_key(conn, "search")
        assert list_keys(conn) == []
        assert quota_history(conn, "k_1") == []
