"""Running ``app_process.py`` in a child process with a given ``MONITOR_*`` environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

APP = Path(__file__).with_name("app_process.py")


@dataclass
class Finished:
    returncode: int
    figures: dict[str, Any]
    stderr: str
    seconds: float


def app_env(database_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["MONITOR_DATABASE_URL"] = database_url
    env.update({f"MONITOR_{k.upper()}": v for k, v in settings.items()})
    return env


def start_app(mode: str, *args: object, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(APP), mode, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> Finished:
    import time

    started = time.monotonic()
    out, err = process.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    figures = json.loads(lines[-1]) if lines else {}
    return Finished(process.returncode, figures, err, time.monotonic() - started)


def run_app(mode: str, *args: object, env: dict[str, str], timeout: float = 180) -> Finished:
    return finish(start_app(mode, *args, env=env), timeout)
