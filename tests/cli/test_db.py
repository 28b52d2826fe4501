"""``longcat-monitor db upgrade`` and ``db current`` through click's runner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.config import get_settings
from monitor.store.engine import head_revision


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    get_settings.cache_clear()


def test_db_upgrade_then_current(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_database(monkeypatch, empty_database_url)
    runner = CliRunner()

    first = runner.invoke(cli, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    assert f"upgraded from an empty database to {head_revision()}" in first.output
    assert "0001_api_calls" in first.output

    again = runner.invoke(cli, ["db", "upgrade"])
    assert again.exit_code == 0, again.output
    assert "already at the latest revision" in again.output

    current = runner.invoke(cli, ["db", "current"])
    assert current.exit_code == 0, current.output
    assert f"{head_revision()} (latest)" in current.output


def test_db_current_on_an_empty_database(
    empty_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_database(monkeypatch, empty_sqlite_url)
    result = CliRunner().invoke(cli, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert "run `longcat-monitor db upgrade`" in result.output


def test_unreachable_database_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    use_database(monkeypatch, "postgresql://bob:pw-secret@127.0.0.1:1/monitor")
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("longcat-monitor: MONITOR_DATABASE_URL: cannot upgrade")
    assert "127.0.0.1" in lines[0]
    assert "pw-secret" not in result.output
    assert "Traceback" not in result.output


def test_bad_url_scheme_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    use_database(monkeypatch, "mysql://root@localhost/monitor")
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "MONITOR_DATABASE_URL" in result.output
