"""One simulator for the whole simulator test session (it starts in a few milliseconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.simulator import RunningSimulator


@pytest.fixture(scope="session")
def simulator() -> Iterator[RunningSimulator]:
    with RunningSimulator() as running:
        yield running
