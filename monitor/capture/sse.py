"""Incremental Server-Sent Events splitting that keeps each event's exact bytes.

Bytes may arrive split at any point, lines may end in LF, CRLF or CR. Each event comes out with
its raw bytes (so a filter can pass the stream on unchanged) and its parsed ``event``/``data``.
An event larger than ``max_event_bytes`` is passed on in raw pieces and not parsed, so memory
stays bounded whatever the server sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_EVENT_BYTES: Final = 1024 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)
class SSEEvent:
    """One event. ``data`` is ``None`` for a blank-only or oversized (unparsed) piece."""

    raw: bytes
    name: str | None
    data: bytes | None


class SSESplitter:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._scan = 0  # where the next unread line starts within _buf
        self._name: str | None = None
        self._data: list[bytes] = []
        self._data_size = 0
        self._has_fields = False
        self._oversized = False
        self._max = max_event_bytes

    @property
    def idle(self) -> bool:
        """Nothing held back: the next byte starts a new event."""
        return not self._buf and not self._has_fields

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes; return the events they complete (in order, covering every byte once)."""
        if not self._buf and 13 not in chunk:  # CR as an int: see monitor.capture.streams
            end = len(chunk) - 2
            if end > 0 and chunk.find(b"\n\n") == end and chunk[0] != 0x0A:
                return [self._block_event(chunk, 0, end)]  # the usual piece: one whole event
            return self._feed_lf(chunk)
        self._buf += chunk
        events = self._drain(final=False)
        if len(self._buf) > self._max:
            events.append(self._overflow())
        return events

    def _feed_lf(self, chunk: bytes) -> list[SSEEvent]:
        """The common case, nothing held back and LF line ends: split on blank lines in C."""
        events: list[SSEEvent] = []
        start = 0
        size = len(chunk)
        while start < size:
            if chunk[start] == 0x0A:  # a blank line with no event before it
                events.append(SSEEvent(raw=b"\n", name=None, data=None))
                start += 1
                continue
            end = chunk.find(b"\n\n", start)
            if end < 0:
                break
            events.append(self._block_event(chunk, start, end))
            start = end + 2
        if start < size:
            self._buf += chunk[start:]
            if len(self._buf) > self._max:
                events.append(self._overflow())
        return events

    def _block_event(self, chunk: bytes, start: int, end: int) -> SSEEvent:
        """The event in ``chunk[start:end]`` (its LF-separated lines), ended by a blank line."""
        raw = chunk if start == 0 and end + 2 == len(chunk) else chunk[start : end + 2]
        block = raw[:-2]
        if block.startswith(b"data:") and block.find(b"\n") < 0 and len(block) <= self._max:
            value = block[6:] if block.startswith(b"data: ") else block[5:]
            return SSEEvent(raw, None, value)
        for line in block.split(b"\n"):
            self._add_field(line)
        if self._oversized or not self._has_fields:
            event = SSEEvent(raw=raw, name=None, data=None)
        else:
            event = SSEEvent(raw=raw, name=self._name, data=b"\n".join(self._data))
        self._reset_event()
        return event

    def finish(self) -> list[SSEEvent]:
        """At the end of the body: the events still held, then any unterminated tail raw."""
        events = self._drain(final=True)
        if self._buf:
            events.append(SSEEvent(raw=bytes(self._buf), name=None, data=None))
            self._buf.clear()
        self._reset_event()
        self._scan = 0
        return events

    def _drain(self, final: bool) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        buf = self._buf
        while True:
            match = _LINE_END.search(buf, self._scan)
            if match is None:
                break
            if not final and match.group() == b"\r" and match.end() == len(buf):
                break  # may be the first half of CRLF: wait for the next byte
            line = bytes(buf[self._scan : match.start()])
            self._scan = match.end()
            if line:
                self._add_field(line)
                continue
            events.append(self._take(self._scan))
        return events

    def _add_field(self, line: bytes) -> None:
        self._has_fields = True
        if self._oversized or line.startswith(b":"):
            return
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data_size += len(value)
            if self._data_size > self._max:
                self._oversized = True
                self._data.clear()
            else:
                self._data.append(value)
        elif field == b"event":
            self._name = value.decode("utf-8", "replace")

    def _take(self, end: int) -> SSEEvent:
        raw = bytes(self._buf[:end])
        del self._buf[:end]
        self._scan = 0
        if self._oversized or not self._has_fields:
            event = SSEEvent(raw=raw, name=None, data=None)
        else:
            event = SSEEvent(raw=raw, name=self._name, data=b"\n".join(self._data))
        self._reset_event()
        return event

    def _overflow(self) -> SSEEvent:
        """Pass on what is buffered of an oversized event; parse nothing more of it."""
        cut = len(self._buf) - 1 if self._buf.endswith(b"\r") else len(self._buf)
        raw = bytes(self._buf[:cut])
        del self._buf[:cut]
        self._scan = 0
        self._oversized = True
        self._data.clear()
        return SSEEvent(raw=raw, name=None, data=None)

    def _reset_event(self) -> None:
        self._name = None
        self._data = []
        self._data_size = 0
        self._has_fields = False
        self._oversized = False
