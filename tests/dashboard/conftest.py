"""A seeded database, and the dashboard opened on it with Streamlit's AppTest."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from seeding import APP, Seeded, seed


@pytest.fixture
def seeded(
    database_url: str, monkeypatch: pytest.MonkeyPatch, midday: datetime
) -> Iterator[Seeded]:
    """Seeded at noon Beijing time: "today" has calls, and the day does not end mid-test."""
    monkeypatch.setenv("MONITOR_DATABASE_URL", database_url)
    monkeypatch.setenv("MONITOR_ALERT_TO", "team@example.com")
    data = seed(database_url)
    yield data
    data.engine.dispose()


@pytest.fixture
def open_app() -> Callable[..., Any]:
    """Run the dashboard with AppTest, on ``page`` (a ``views/*.py`` path) if given."""
    from streamlit.testing.v1 import AppTest

    def run(page: str | None = None) -> AppTest:
        app = AppTest.from_file(APP, default_timeout=60)
        app.run()
        if page is not None:
            app.switch_page(page)
            app.run()
        assert not app.exception, [e.value for e in app.exception]
        return app

    return run
