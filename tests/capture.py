"""A recorder stand-in that keeps what the wrapper submits (the recorder is not the subject)."""

from __future__ import annotations

from monitor.capture.bodies import RequestFacts
from monitor.capture.observer import CallObserver
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


def drive_stream(
    record: CallRecord, facts: RequestFacts, pieces: list[bytes], *, strip: bool, end: bool
) -> tuple[bytes, list[CallRecord]]:
    """Feed a streamed 200 response's ``pieces`` to an observer of ``record`` as the transport
    does, then close it (after ``on_end`` when ``end``): the bytes the caller gets and the
    records submitted."""
    submitted: list[CallRecord] = []
    observer = CallObserver(record, facts, submitted.append, strip_usage_chunk=strip)
    observer.on_response(200, {"content-type": "text/event-stream"})
    out = bytearray()
    for piece in pieces:
        data = observer.on_chunk(piece)
        out += data if isinstance(data, bytes) else b"".join(data)
    if end:
        out += observer.on_end()
    observer.on_close()
    return bytes(out), submitted
