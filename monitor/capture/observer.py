"""One attempt followed from request to end of body, ending in exactly one CallRecord.

The transport calls ``on_response``, then ``on_chunk`` for each body piece as the caller reads it,
then ``on_end`` / ``on_body_error`` / ``on_close``. Nothing here raises into the caller except
:class:`CallerDecodeError`, and only in the one mode where the monitor rewrote the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final

from monitor.capture.bodies import ErrorInfo, RequestFacts, Usage, body_facts, estimate_tokens
from monitor.capture.client_decoding import EVERY_CODING, ClientDecoding
from monitor.capture.decoding import IDENTITY, DecodeError, Decoder, decoder_for
from monitor.capture.sse import SSEEvent, SSESplitter
from monitor.capture.streams import StreamReader, null_usage_removed, reader_for, without_null_usage
from monitor.records import CallRecord
from monitor.safety import report_failure
from monitor.scrub import KeyForms, scrub_record

BODY_PARSE_LIMIT: Final = 4 * 1024 * 1024
BODY_TAIL_KEEP: Final = 64 * 1024
#: Once a stream's first content is seen, its pieces are read in batches of about this size.
PENDING_LIMIT: Final = 64 * 1024
CLIENT_CLOSED: Final = "client_closed"


class CallerDecodeError(Exception):
    """The body could not be decoded where the monitor decodes it in the caller's place."""


def _is_timeout(exc: BaseException) -> bool:
    return any("Timeout" in cls.__name__ for cls in type(exc).__mro__)


def exception_error(exc: BaseException, *, during_stream: bool) -> ErrorInfo:
    """The error class of an exception raised by the inner transport or body stream."""
    code = type(exc).__name__
    if _is_timeout(exc):
        return ErrorInfo("timeout", code, str(exc)[:200] or None)
    if during_stream:
        return ErrorInfo("stream_interrupted", code, str(exc)[:200] or None)
    return ErrorInfo("connection", code, str(exc)[:200] or None)


class CallObserver:
    def __init__(
        self,
        record: CallRecord,
        facts: RequestFacts,
        submit: Callable[[CallRecord], None],
        *,
        strip_usage_chunk: bool = False,
        client_decoding: ClientDecoding = EVERY_CODING,
        clock: Callable[[], float] = time.perf_counter,
        key: KeyForms | None = None,
    ) -> None:
        self.record = record
        self._key = key
        self.facts = facts
        self.strip_usage_chunk = strip_usage_chunk
        #: what the caller's client decodes: only such a body may be decoded in its place
        self._client_decoding = client_decoding
        self._submit = submit
        self._clock = clock
        self._t0 = clock()
        self._done = False
        self._observing = True
        self._status = 0
        self._retry_after: str | None = None
        self._decoder: Decoder | None = None
        self._identity = False
        self._splitter: SSESplitter | None = None
        self._reader: StreamReader | None = None
        self._body: bytearray | bytes | None = None
        self._body_truncated = False
        self._body_ended = False
        # After the first content (TTFT) nothing in a stream is needed until it ends, so the
        # pieces are kept back (bounded) and read in one go: one pass per batch, not per event.
        self._deferring = False
        self._pending: list[bytes] = []
        self._pending_size = 0

    # -- response arrives -------------------------------------------------------------------
    def on_response(self, status: int, headers: Mapping[str, str]) -> bool:
        """Note status and headers. Returns True when the body will be rewritten (decoded and
        the usage chunk removed), so the transport must drop content-encoding/length headers.

        A body in a coding the caller's client would not decode is not rewritten: the client
        would hand it to the caller as it came, so it passes as it came (its usage chunk in it),
        and the monitor reads a decoded copy.
        """
        self._status = status
        record = self.record
        record.status_code = status
        record.request_id = headers.get("x-request-id") or headers.get("request-id")
        self._retry_after = headers.get("retry-after")
        content_type = (headers.get("content-type") or "").lower()
        is_sse = content_type.startswith("text/event-stream") or (
            not content_type and self.facts.stream
        )
        encoding = headers.get("content-encoding")
        self.strip_usage_chunk = (
            self.strip_usage_chunk
            and is_sse
            and status < 400
            and (not encoding or self._client_decoding.decodes(encoding))
        )
        try:
            self._decoder = decoder_for(encoding)
            self._identity = self._decoder is IDENTITY
        except DecodeError as exc:  # a coding decodes() said no to: not rewritten either
            self._observing = False
            report_failure("decoding a response", exc)
        if is_sse:
            self._splitter = SSESplitter()
            self._reader = reader_for(record.api, record.endpoint)
        else:
            self._body = bytearray()
        return self.strip_usage_chunk

    # -- body -------------------------------------------------------------------------------
    def on_chunk(self, chunk: bytes) -> Iterator[bytes] | bytes:
        """Observe one body piece; return the bytes the caller gets for it.

        Where the monitor rewrites the stream (it asked for usage on the caller's behalf) the
        result is an iterator of decoded pieces, each bounded, so a compression bomb never sits
        in memory whole.
        """
        if self._deferring:
            pending = self._pending
            if not self.strip_usage_chunk:
                pending.append(chunk)
            else:
                out = None
                # bytes.find, not ``in``, and 13 (CR) as an int: see monitor.capture.streams
                if (
                    chunk.endswith(b"\n\n")
                    and 13 not in chunk
                    and (pending or self._splitter_idle())
                ):
                    out = chunk if chunk.find(b'"usage"') < 0 else null_usage_removed(chunk)
                if out is None:  # read alone, through the splitter: it could not be read whole
                    self._flush_pending()
                    return self._filter_decoded(chunk, whole=False)
                # whole events, none to drop, passed on with their null usage taken out (an
                # error among them is read with the batch, before the record is made)
                pending.append(out)
                chunk = out
            self._pending_size += len(chunk)
            if self._pending_size > PENDING_LIMIT:
                self._flush_pending()
            return chunk
        if self.strip_usage_chunk:
            if self._identity:
                out = self._filter_decoded(chunk)
                self._deferring = self._reader is not None and self._reader.saw_content
                return out
            return self._rewrite(chunk)
        if self._observing:
            try:
                self._observe(chunk)
            except Exception as exc:
                self._observing = False
                report_failure("reading a response body", exc)
            else:
                self._deferring = (
                    self._observing and self._reader is not None and self._reader.saw_content
                )
        return chunk

    def _splitter_idle(self) -> bool:
        return self._splitter is not None and self._splitter.idle

    def _flush_pending(self) -> None:
        """Read the pieces kept back, in order, as one piece (splitting and decoding are
        incremental, so that reads the same as piece by piece)."""
        if not self._pending:
            return
        joined = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        try:
            if self.strip_usage_chunk:  # whole events, passed on already, each one checked
                self._read_events(joined, drop=True, checked=True)
            elif self._observing:
                self._observe(joined)
        except Exception as exc:
            self._observing = False
            report_failure("reading a response body", exc)
        self._deferring = self._observing

    def _decoded(self, chunk: bytes) -> Iterable[bytes]:
        """The decoded pieces of ``chunk``, produced one at a time as they are read."""
        assert self._decoder is not None
        if self._identity:
            return (chunk,)
        return self._decoder.feed(chunk)

    def _observe(self, chunk: bytes) -> None:
        if self._decoder is None:
            return
        try:
            for piece in self._decoded(chunk):
                if self._splitter is None:
                    self._keep_body(piece)
                else:
                    self._read_events(piece)
        except DecodeError:
            self._observing = False  # the caller's client will say what is wrong with the body

    def _rewrite(self, chunk: bytes) -> Iterator[bytes]:
        try:
            for piece in self._decoded(chunk):
                yield self._filter_decoded(piece)
        except DecodeError as exc:
            raise CallerDecodeError(str(exc)) from exc

    def _read_whole(self, piece: bytes, checked: bool = False) -> bool:
        """Read a piece of plain content events at once (see StreamReader.consume_whole).

        ``checked``: ``piece`` is known to be whole LF-terminated events, the splitter idle, and
        to hold no usage key (pieces ``on_chunk`` kept back), so that is not searched again.
        """
        reader = self._reader
        assert reader is not None and self._splitter is not None
        if not checked and not (
            self._splitter.idle and piece.endswith(b"\n\n") and 13 not in piece
        ):
            return False
        had_content = reader.saw_content
        try:
            whole = reader.consume_whole(piece, usage_free=checked)
        except Exception as exc:
            report_failure("reading a stream event", exc)
            return False
        if not had_content and reader.saw_content and self.record.ttft_ms is None:
            self.record.ttft_ms = (self._clock() - self._t0) * 1000.0
        return whole

    def _read_events(self, piece: bytes, drop: bool = False, checked: bool = False) -> None:
        """Read the events ``piece`` holds or completes: plain ones at once where they can be
        (``checked``: see ``_read_whole``)."""
        assert self._splitter is not None
        if self._read_whole(piece, checked):
            return
        head = self._plain_head(piece)
        if head and self._read_whole(piece[:head], checked):
            piece = piece[head:]  # the plain events before the first special one are read
        for event in self._splitter.feed(piece):
            self._read_event(event, drop)

    def _plain_head(self, piece: bytes) -> int:
        """The length of the whole events at the start of ``piece`` before the first one that
        must be read alone (usage, error, end of message), 0 when there are none."""
        assert self._reader is not None and self._splitter is not None
        if not self._splitter.idle or 13 in piece:  # CR: events may not end in LF LF
            return 0
        special = self._reader.special_at(piece)
        end = piece.rfind(b"\n\n", 0, special) if special > 0 else -1
        return end + 2 if end >= 0 else 0

    def _read_event(self, event: SSEEvent, drop: bool = False) -> bool:
        reader = self._reader
        assert reader is not None
        had_content = reader.saw_content
        try:
            dropped = reader.consume(event, drop)
        except Exception as exc:
            report_failure("reading a stream event", exc)
            return False
        if not had_content and reader.saw_content and self.record.ttft_ms is None:
            self.record.ttft_ms = (self._clock() - self._t0) * 1000.0
        return dropped

    def _keep_body(self, piece: bytes) -> None:
        body = self._body
        assert body is not None
        if not body and type(piece) is bytes and len(piece) <= BODY_PARSE_LIMIT:
            self._body = piece  # the usual body, in one piece: kept as it is, not copied
            return
        if isinstance(body, bytes):
            self._body = body = bytearray(body)
        body += piece
        if len(body) > BODY_PARSE_LIMIT:
            self._body_truncated = True
            del body[:-BODY_TAIL_KEEP]

    def on_read_body(self, content: bytes) -> bytes:
        """A body the inner transport had already read and decoded (mock and WSGI transports
        hand such responses over): observe it whole; returns the body the caller gets."""
        self._decoder = IDENTITY
        self._identity = True
        if not self.strip_usage_chunk:
            body = self._body
            if body is not None and not body and self._observing:
                self._keep_body(content)
            else:
                self.on_chunk(content)
            self.on_end()
            return content
        return b"".join(self._rewrite(content)) + self.on_end()

    def on_end(self) -> bytes:
        """The body was read to its end. Returns bytes still held back for the caller."""
        if self._pending:
            self._flush_pending()
        self._body_ended = True
        tail = b""
        splitter = self._splitter
        if (
            self.strip_usage_chunk
            and splitter is not None
            and self._decoder is not None
            and not (self._identity and splitter.idle)  # else nothing is held back
        ):
            try:
                rest = b"".join(self._decoder.finish())
            except DecodeError as exc:
                raise CallerDecodeError(str(exc)) from exc
            out = bytearray(self._filter_decoded(rest) if rest else b"")
            for event in splitter.finish() if not splitter.idle else ():
                if not self._read_event(event, drop=True):
                    out += without_null_usage(event.raw)
            tail = bytes(out)
        self._finish(None)
        return tail

    def _filter_decoded(self, piece: bytes, whole: bool = True) -> bytes:
        """The bytes the caller gets for ``piece``, its events read (``whole``: at once where
        they can be)."""
        assert self._splitter is not None
        if whole and self._read_whole(piece):
            return without_null_usage(piece)
        events = self._splitter.feed(piece)
        if len(events) == 1:  # the usual piece: one whole event
            event = events[0]
            return b"" if self._read_event(event, drop=True) else without_null_usage(event.raw)
        return b"".join(
            [without_null_usage(e.raw) for e in events if not self._read_event(e, drop=True)]
        )

    def on_request_error(self, exc: BaseException) -> None:
        self._finish(exception_error(exc, during_stream=False))

    def on_body_error(self, exc: BaseException) -> None:
        if isinstance(exc, GeneratorExit):
            return  # the caller stopped reading; on_close tells the rest
        if isinstance(exc, asyncio.CancelledError):
            self.on_close()  # the caller's task was cancelled mid-read: it closed the stream
            return
        self._finish(exception_error(exc, during_stream=self._splitter is not None))

    def on_close(self) -> None:
        if self._done:
            return
        self._flush_pending()
        reader = self._reader
        if reader is not None and (reader.ended or reader.error is not None):
            self._finish(None)  # closed after the end marker: the normal openai SDK path
        elif self._body_ended or self._status >= 400:
            self._finish(None)  # an error response need not be read: its status tells the class
        else:
            self._finish(ErrorInfo("stream_interrupted", CLIENT_CLOSED, "closed by the caller"))

    # -- the record -------------------------------------------------------------------------
    def _finish(self, failure: ErrorInfo | None) -> None:
        if self._done:
            return
        self._done = True
        try:
            if self._pending:
                self._flush_pending()
            self._complete(failure)
            # The one place a record from traffic is made safe: before it is queued, stored,
            # spooled, counted by the gateway's guard or logged.
            self._submit(scrub_record(self.record, self._key))
        except Exception as exc:
            report_failure("recording a call", exc)

    def _complete(self, failure: ErrorInfo | None) -> None:
        record = self.record
        record.latency_ms = (self._clock() - self._t0) * 1000.0
        usage: Usage | None = None
        error = failure
        if self._reader is not None:
            reader = self._reader
            if self._decoder is not None and self._observing and not self.strip_usage_chunk:
                for event in self._splitter.finish() if self._splitter else []:
                    self._read_event(event)
            record.model = reader.model or record.model
            usage = reader.usage
            if reader.error is not None:
                error = reader.error
            elif (
                error is None and not reader.ended and record.api != "other" and self._status < 400
            ):
                error = ErrorInfo("stream_interrupted", "no_end_marker", "stream ended early")
            usage = self._complete_stream_usage(usage, reader)
        elif self._body is not None and self._status:
            facts = body_facts(
                record.api,
                self._status,
                bytes(self._body) if self._observing else None,
                self._retry_after,
                truncated=self._body_truncated,
            )
            record.model = facts.model or record.model
            usage = facts.usage
            error = error or facts.error
        if error is None and self._status >= 400:
            error = body_facts(record.api, self._status, None, self._retry_after).error
        if error is not None:
            record.error_type = error.error_type
            record.error_code = error.code
            record.error_message = error.message
            record.retry_after_s = error.retry_after_s
        if usage is not None:
            record.input_tokens = usage.input_tokens
            record.output_tokens = usage.output_tokens
            record.total_tokens = usage.total_tokens
            record.cache_read_tokens = usage.cache_read_tokens
            record.cache_write_tokens = usage.cache_write_tokens
            record.reasoning_tokens = usage.reasoning_tokens
            record.usage_source = usage.source

    def _complete_stream_usage(self, usage: Usage | None, reader: StreamReader) -> Usage | None:
        """Reported usage where the stream carried it in full; otherwise an estimate from the text
        seen (keeping any reported input and cache counts)."""
        if self._status >= 400 or self.record.api == "other":
            return usage
        if usage is not None and reader.usage_final:
            return usage
        if usage is None and not reader.saw_content:
            return None  # nothing arrived at all: nothing to estimate
        facts = self.facts
        estimate = Usage(source="estimated")
        if usage is not None and usage.input_tokens is not None:
            estimate.input_tokens = usage.input_tokens
            estimate.cache_read_tokens = usage.cache_read_tokens
            estimate.cache_write_tokens = usage.cache_write_tokens
        else:
            estimate.input_tokens = estimate_tokens(*facts.prompt_size())
        estimate.output_tokens = estimate_tokens(reader.output_chars, reader.output_non_ascii)
        total = estimate.input_tokens + estimate.output_tokens
        if self.record.api == "anthropic":  # anthropic counts cache tokens beside input_tokens
            total += (estimate.cache_read_tokens or 0) + (estimate.cache_write_tokens or 0)
        estimate.total_tokens = total
        return estimate
