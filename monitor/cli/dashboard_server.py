"""Starting and stopping the Streamlit dashboard server as a child process."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Final

DEFAULT_PORT: Final = 8501
DEFAULT_HOST: Final = "127.0.0.1"
STARTUP_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0


def app_path() -> Path:
    """The dashboard's entry script, ``dashboard/app.py`` (installed as ``monitor.dashboard``)."""
    dashboard = importlib.import_module("monitor.dashboard")
    return Path(next(iter(dashboard.__path__))) / "app.py"


def streamlit_argv(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """``python -m streamlit run dashboard/app.py`` headless, without usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
        "--theme.base",
        "light",
    ]


def dashboard_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    return f"http://{shown}:{port}/"


def start_dashboard(
    host: str, port: int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the server in its own process group (so it can be stopped with all its children)."""
    return subprocess.Popen(
        streamlit_argv(host, port),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until_serving(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = STARTUP_TIMEOUT_S
) -> bool:
    """True once ``url``'s health endpoint answers 200; False on timeout or if the process died."""
    health = url.rstrip("/") + "/_stcore/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process's group, then SIGKILL whatever is left after ``timeout``."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
