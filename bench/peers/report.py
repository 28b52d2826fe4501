"""The peers report: tables printed as text and written as Markdown, with versions and machine."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.common import machine, print_table

PACKAGES = (
    "openai",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "opentelemetry-exporter-otlp-proto-http",
    "langfuse",
    "litellm",
    "aiohttp",
    "uvicorn",
    "httpx2",
)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def print(self) -> None:
        if self.rows:
            print_table(self.title, self.header, self.rows)
        else:
            print(f"\n{self.title}\n(no rows)")
        for note in self.notes:
            print(f"  {note}")

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.rows:
            lines.append("| " + " | ".join(self.header) + " |")
            lines.append("|" + "|".join("---" for _ in self.header) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            lines.append("")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def source_revision(repo: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "monitor", "bench"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (modified)" if dirty else "")


def machine_line() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{cpu}; {machine()}"


def load_average() -> float:
    """The 1-minute load average: what else the machine was running."""
    return os.getloadavg()[0]


def write(
    directory: Path, command: str, header: list[str], tables: list[Table], started: dt.datetime
) -> Path:
    """Write the report as ``peers-<date>T<HHMM>.md`` (the run's start), so runs on the same day
    each keep their own file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"peers-{started:%Y-%m-%dT%H%M}.md"
    text = [f"# Peers, {started:%Y-%m-%d %H:%M}", "", f"Command: `{command}`", ""]
    text += [f"- {line}" for line in header] + [""]
    text += [table.markdown() for table in tables]
    path.write_text("\n".join(text))
    return path
