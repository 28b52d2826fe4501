"""Fixtures the store tests share: an engine on the migrated ``database_url``, and its settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from monitor.config import Settings, load_settings
from monitor.store.engine import make_engine


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings(database_url=database_url)
