"""Fixtures for the wrapper tests: the project's LongCat-compatible simulator, a capturing sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from capture import CapturedCalls

from monitor.simulator import RunningSimulator


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator() as running:
        yield running


@pytest.fixture
def captured() -> CapturedCalls:
    return CapturedCalls()
