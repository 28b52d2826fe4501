"""The public surface of ``monitor`` is exactly what ``__all__`` lists."""

from __future__ import annotations

import monitor


def test_the_public_names_are_pinned() -> None:
    assert monitor.__all__ == [
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
    for name in monitor.__all__:
        assert getattr(monitor, name) is not None
