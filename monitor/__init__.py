"""longcat-monitor: know at any minute how much of today's quota each LongCat key has burned.

>>> import monitor
>>> from openai import OpenAI
>>> client = monitor.instrument(OpenAI(base_url="https://api.longcat.chat/openai", api_key="..."))
>>> with monitor.tags(feature="summarise", user="alice"):
...     pass  # every call made here is recorded with these labels
>>> monitor.flush()  # write everything queued (also done at exit)
True
"""

from __future__ import annotations

from monitor.capture.labels import current_labels, tags
from monitor.config import ConfigError, Settings, load_settings
from monitor.instrument import NotInstrumentableError, instrument
from monitor.records import CallRecord


def flush(timeout: float | None = None) -> bool:
    """Write every call recorded so far; True when all of it was written within ``timeout``."""
    from monitor.recording.recorder import flush as flush_recorder

    return flush_recorder(timeout)


__all__ = [
    "CallRecord",
    "ConfigError",
    "NotInstrumentableError",
    "Settings",
    "current_labels",
    "flush",
    "instrument",
    "load_settings",
    "tags",
]
