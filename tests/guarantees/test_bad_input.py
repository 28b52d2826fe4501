"""Bad input at every door: one clear line naming what to fix, a non-zero exit, nothing changed.

(Keys on the command line: tests/cli/test_keys.py; SMTP refusing a login: tests/alerts/;
a corrupt spool: tests/recording/test_spool.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BAD_SETTINGS = [
    ("MONITOR_QUOTA_TZ", "Mars/Base", "is not a time zone"),
    ("MONITOR_DEFAULT_QUOTA", "lots", "MONITOR_DEFAULT_QUOTA"),
    ("MONITOR_ALERT_THRESHOLDS", "50,eighty", "comma-separated"),
    ("MONITOR_SMTP_PORT", "70000", "MONITOR_SMTP_PORT"),
    ("MONITOR_SPOOL_MAX_BYTES", "-1", "greater than 0"),
    ("MONITOR_FLUSH_INTERVAL_S", "soon", "MONITOR_FLUSH_INTERVAL_S"),
    ("MONITOR_DATABASE_URL", "mysql://db/monitor", "expected sqlite:///PATH"),
]


def run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), **env}
    return subprocess.run(
        [sys.executable, "-c", "from monitor.cli import main; main()", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(("name", "value", "message"), BAD_SETTINGS)
def test_a_bad_setting_stops_the_command_with_one_line(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    db = tmp_path / "monitor.db"
    env = {"MONITOR_DATABASE_URL": f"sqlite:///{db}", name: value}
    result = run(["tick"], env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and message in lines[0]
    assert not db.exists()  # nothing was touched


@pytest.mark.parametrize("command", [["tick"], ["db", "upgrade"], ["keys", "list"]])
def test_an_unreachable_database_is_named(tmp_path: Path, command: list[str]) -> None:
    url = "postgresql://monitor:hunter2@127.0.0.1:9/monitor"
    result = run(command, {"MONITOR_DATABASE_URL": url}, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "127.0.0.1:9" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_corrupt_database_file_is_named(tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    db.write_bytes(b"this is not an SQLite database" * 100)
    before = db.read_bytes()
    result = run(["tick"], {"MONITOR_DATABASE_URL": f"sqlite:///{db}"}, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(db) in lines[0]
    assert db.read_bytes() == before
