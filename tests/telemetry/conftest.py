"""The OTLP receiver fixture the telemetry tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from otlp_receiver import OtlpReceiver

from monitor.config import get_settings
from monitor.recording.recorder import set_recorder


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """A receiver, and the monitor's default recorder exporting to it."""
    with OtlpReceiver() as running:
        monkeypatch.setenv("MONITOR_OTLP_ENDPOINT", running.endpoint)
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
        get_settings.cache_clear()
        set_recorder(None)
        yield running
