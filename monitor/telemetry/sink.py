"""A recorder sink that stores each batch through another sink, then exports it over OTLP.

It runs on the recorder's writer thread, never the caller's. A record is exported once it is
stored: a batch the database refuses goes to the spool and is exported when it is replayed. The
exporter is built on the first batch (so a process that never calls starts no OTel thread), and
its failures are swallowed: storing goes on whatever happens to the export.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from monitor.records import CallRecord
from monitor.safety import swallow
from monitor.telemetry.exporter import OtlpExporter


class BatchSink(Protocol):
    """The recorder's ``Sink`` protocol (``monitor.recording.recorder.Sink``)."""

    def write(self, batch: Sequence[CallRecord]) -> None: ...

    def idle(self) -> None: ...

    def close(self) -> None: ...


class ExportingSink:
    """``inner`` (the SQL sink), and every record it stored exported over OTLP.

    >>> sink = ExportingSink(SqlSink(url), endpoint="http://127.0.0.1:4318")  # doctest: +SKIP
    """

    def __init__(self, inner: BatchSink, endpoint: str | None = None) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.exporter: OtlpExporter | None = None
        self._failed_to_start = False

    def write(self, batch: Sequence[CallRecord]) -> None:
        self.inner.write(batch)
        exporter = self._exporter()
        if exporter is not None:
            with swallow("exporting call records over OTLP"):
                exporter.export(batch)

    def idle(self) -> None:
        self.inner.idle()

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if self.exporter is not None:
                with swallow("closing the OTLP exporter"):
                    self.exporter.shutdown()

    def _exporter(self) -> OtlpExporter | None:
        if self.exporter is None and not self._failed_to_start:
            with swallow("starting the OTLP exporter"):
                self.exporter = OtlpExporter(self.endpoint)
            self._failed_to_start = self.exporter is None
        return self.exporter
