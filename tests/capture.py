"""A recorder stand-in that keeps what the wrapper submits (the recorder is not the subject)."""

from __future__ import annotations

from monitor.records import CallRecord


class CapturedCalls:
    """Collects the records the wrapper submits (the recorder is not the subject here)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def submit(self, record: CallRecord) -> None:
        self.records.append(record)

    def only(self) -> CallRecord:
        assert len(self.records) == 1, self.records
        return self.records[0]
