"""An empty database, an unreachable one, and the password gate: friendly pages, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def test_empty_database_shows_how_to_instrument(
    sqlite_url: str, open_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", sqlite_url)
    app = open_app()
    assert app.info[0].value.startswith("No calls recorded yet")
    assert any("monitor.instrument(" in c.value for c in app.code)
    assert not app.metric


def test_empty_postgres_database(
    postgres_url: str, open_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", postgres_url)
    app = open_app()
    assert app.info[0].value.startswith("No calls recorded yet")


@pytest.mark.parametrize(
    "url",
    ["postgresql://nobody@127.0.0.1:9/nowhere", "sqlite:////proc/no-such-dir/monitor.db"],
)
def test_unreachable_database_shows_a_message(
    url: str, open_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    app = open_app()
    assert app.error[0].value.startswith("The dashboard cannot read its database")
    assert "MONITOR_DATABASE_URL" in " ".join(m.value for m in app.markdown)


def test_postgres_without_schema_says_to_upgrade(
    empty_postgres_url: str, open_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", empty_postgres_url)
    app = open_app()
    assert "longcat-monitor db upgrade" in " ".join(m.value for m in app.markdown)


def test_password_gate(
    sqlite_url: str,
    open_app: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MONITOR_DASHBOARD_PASSWORD", "correct horse")
    app = open_app()
    assert not app.code and not app.info
    app.text_input[0].input("wrong")
    app.button[0].click().run()
    assert app.error[0].value == "That password is not right."
    app.text_input[0].input("correct horse")
    app.button[0].click().run()
    assert app.info[0].value.startswith("No calls recorded yet")
