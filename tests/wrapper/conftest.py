"""Fixtures for the wrapper tests: the project's LongCat-compatible simulator, a capturing sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor.records import CallRecord
from monitor.simulator import RunningSimulator


class CapturedCalls:
    """Collects the records the wrapper submits (the recorder is not the subject here)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def submit(self, record: CallRecord) -> None:
        self.records.append(record)

    def only(self) -> CallRecord:
        assert len(self.records) == 1, self.records
        return self.records[0]


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator() as running:
        yield running


@pytest.fixture
def captured() -> CapturedCalls:
    return CapturedCalls()
