"""Fixtures for the guarantee tests: a throwaway Postgres cluster the tests may stop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dependencies import require
from pg_cluster import PostgresCluster, available, throwaway_postgres

from monitor.store.engine import make_engine, upgrade


@pytest.fixture
def pg_cluster() -> Iterator[PostgresCluster]:
    """A migrated Postgres of this test's own, on a free port (never the shared server)."""
    reason = available()
    require(reason is None, f"a throwaway Postgres ({reason})")
    with throwaway_postgres() as cluster:
        engine = make_engine(cluster.url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield cluster
