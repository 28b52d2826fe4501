"""The real server: ``longcat-monitor dashboard`` in headless Chromium, and ``longcat-monitor demo``
started and stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium import CHROMIUM, Page, chromium_page
from dependencies import require
from seeding import seed
from waiting import eventually

from monitor.cli.dashboard_server import wait_until_serving
from monitor.store.engine import make_engine, upgrade

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CLI = [str(Path(sys.executable).with_name("longcat-monitor"))]
#: Each page's path, a text it shows once rendered, and whether it draws charts.
PAGES = [
    ("", "Today · quota day", True),
    ("history", "Tokens in range", True),
    ("errors", "Recent failures", True),
    ("latency", "Over the whole range", True),
    ("alerts", "Alert ledger", False),
    ("keys", "Quota history", False),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def rendered(page: Page, marker: str, charts: bool) -> bool:
    """The page shows ``marker``, the script has finished and (if any) a chart is drawn."""
    if marker not in page.text() or "Stop" in page.text().split("\n")[:40]:
        return False
    drawn = page.evaluate("document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length")
    return not charts or (drawn or 0) > 0


@pytest.fixture
def chromium() -> None:
    require(Path(CHROMIUM).exists(), f"chromium at {CHROMIUM}")


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    monkeypatch.setenv("MONITOR_ALERT_TO", "team@example.com")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    seed(url).engine.dispose()
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "dashboard", "--port", str(port)],
        env={**os.environ, "MONITOR_DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until_serving(f"http://127.0.0.1:{port}/", process, timeout=60)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


@pytest.mark.browser
@pytest.mark.slow
def test_every_page_renders_in_chromium(chromium: None, served: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(served, tmp_path / "profile", height=1800) as page:
        for path, marker, charts in PAGES:
            if path:
                page.call("Page.navigate", url=served + path)
            eventually(
                lambda m=marker, c=charts: rendered(page, m, c),
                45,
                interval=0.5,
                what=lambda p=path: f"/{p} to render; it shows: {page.text()[:500]}",
            )
            time.sleep(1)  # let the last chart finish drawing before the screenshot
            text = page.text()
            assert "Traceback" not in text and "Error:" not in text, text[:1000]
            assert not page.evaluate(
                "document.querySelectorAll('[data-testid=stException]').length"
            )
            page.screenshot(ARTIFACTS / f"dashboard-{path or 'today'}.png")


@pytest.mark.slow
def test_demo_starts_and_stops_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")},
        "MONITOR_DATABASE_URL": f"sqlite:///{db}",
        "HOME": str(tmp_path),
    }
    process = subprocess.Popen(
        [*CLI, "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert wait_until_serving(f"http://127.0.0.1:{port}/", process, timeout=120), (
            process.stdout.read().decode() if process.stdout and process.poll() is not None else ""
        )
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
            assert reply.status == 200
        engine = make_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            calls = conn.exec_driver_sql("SELECT COUNT(*) FROM api_calls").scalar()
            wrapped = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM api_calls WHERE source = 'wrapper'"
            ).scalar()
            alerts = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM alert_deliveries WHERE status = 'sent'"
            ).scalar()
        engine.dispose()
        assert calls and wrapped and wrapped >= 40
        assert alerts and alerts >= 1
        children = children_of(process.pid)
        assert children, "the dashboard server should be a child of the demo"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output = process.communicate(timeout=45)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert process.returncode == 0, output
    assert "Stopped." in output
    assert "e-mail to" in output
    eventually(
        lambda: not any(alive(child) for child in children),
        interval=0.2,
        what="the demo's children to exit",
    )
