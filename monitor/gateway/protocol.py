"""The gateway's HTTP server protocol: uvicorn's httptools protocol, writing each answer's head
together with the first piece of its body, and telling the app when its client has gone.

uvicorn writes the head of a response as soon as the app starts it, and each body piece as it is
sent: a non-streamed answer goes out in two system calls (and two TCP segments the client reads
one after the other), a stream's first event in two as well. Here the head is held until the
first piece of the body is written, then both go in one call; pieces written in the same turn of
the event loop after that go together at the end of the turn. Nothing waits for the upstream: a
head whose body is not in hand yet, and every later piece, are written as soon as the gateway
yields to the event loop, and the end of a response is written at once.

Each request's scope also carries the :data:`CLIENT_GONE` extension: a dict in which the app may
put a ``"callback"``, called if the client's connection is lost before the response is complete
(so the app needs no task of its own waiting on ``receive()`` to learn it).
A request past uvicorn's ``limit_concurrency`` goes to the app too, marked with
:data:`OVER_CONNECTION_LIMIT`, instead of to uvicorn's plain-text 503.

A client holds a connection only while it keeps its side going: the head of each request must
arrive whole within the header timeout (from the first byte, or from connecting), and while the
gateway waits on the client (for the rest of a request body, or for it to read more of an answer)
it may be silent for the idle timeout at most. Then the connection is closed, which the app sees
as the client gone. (uvicorn's own ``timeout_keep_alive`` covers the wait between requests.)

An answer sent before the request's body has arrived whole (a 413, a refusal that never needed
the body) is followed by a drain: the rest of the body is read and discarded, up to
:data:`DRAIN_MAX_BYTES` and for :data:`DRAIN_TIMEOUT_S` at most, so a client that sends its whole
body before it reads can finish sending and read the answer. Closing at once instead would leave
the client's bytes unread, and the kernel answers those with a reset that loses the answer. After
an answer that closes the connection, the gateway's side is shut for writing first (the client
sees the answer end), and the connection closes once the body is over; after one that keeps it,
the connection serves the next request. A body whose stated length is past the bound, or that
goes on past it, is not waited for: the connection is closed.

>>> uvicorn.Config(app, http=GatewayHttpProtocol.with_timeouts(10, 30))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, Final

from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from monitor.config import DEFAULT_GATEWAY_HEADER_TIMEOUT_S, DEFAULT_GATEWAY_IDLE_TIMEOUT_S

#: The scope extension (ASGI ``scope["extensions"]``) that tells the app its client is gone.
CLIENT_GONE: Final = "longcat_monitor.client_gone"
#: The scope extension that tells the app the server is past its own limit of connections (or
#: requests) at once (uvicorn's ``limit_concurrency``): its value is that limit. The app answers
#: the request with a 503 in the API's shape, where uvicorn would answer in plain text.
OVER_CONNECTION_LIMIT: Final = "longcat_monitor.over_connection_limit"
#: Bytes of an unforwarded request body read and discarded after the answer, at most.
DRAIN_MAX_BYTES: Final = 64 * 1024 * 1024
#: Seconds the gateway goes on reading an unforwarded body after the answer, at most.
DRAIN_TIMEOUT_S: Final = 10.0


class CoalescingWriter:
    """A transport's writes, gathered as described above; everything else passes through.

    The bytes go out in the order written; closing writes what is held first, and is put off
    while :attr:`linger` says so (a body is being drained).
    """

    __slots__ = ("_at_head", "_closing", "_head_held", "_loop", "_pending", "_transport", "linger")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._at_head = True  # the next write is the head of a response
        self._head_held = False
        self._closing = False
        #: Asked when the connection is to close: True if it takes the close over (a drain).
        self.linger: Callable[[], bool] | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
            self._head_held = self._at_head
        else:
            pending.append(data)
            if self._head_held:  # the head's first body piece: both go now
                self.flush()
        self._at_head = False

    def flush(self) -> None:
        """Write what is held, in one system call."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        self._head_held = False
        if self._closing or self._transport.is_closing():
            return  # the connection is gone (or draining a body): nothing can be written
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def end_response(self) -> None:
        """The response is complete: write it now; the next write is the next response's head."""
        self.flush()
        self._at_head = True

    def close(self) -> None:
        self.flush()
        if not self._closing and self.linger is not None and self.linger():
            self._closing = True  # for the server, closed; the drain closes it when it ends
            return
        self._closing = True
        self._transport.close()

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingWriter`, with :data:`CLIENT_GONE`,
    the header and idle timeouts, and the drain of a body answered without."""

    header_timeout_s: float = DEFAULT_GATEWAY_HEADER_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_GATEWAY_IDLE_TIMEOUT_S
    drain_max_bytes: int = DRAIN_MAX_BYTES
    drain_timeout_s: float = DRAIN_TIMEOUT_S

    @classmethod
    def with_timeouts(
        cls, header_timeout_s: float, idle_timeout_s: float
    ) -> type[GatewayHttpProtocol]:
        """This protocol with other timeouts (uvicorn builds one per connection from a class)."""
        attributes = {"header_timeout_s": header_timeout_s, "idle_timeout_s": idle_timeout_s}
        return type(cls.__name__, (cls,), attributes)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._socket = self.transport
        writer = CoalescingWriter(self.transport, self.loop)
        writer.linger = self._linger
        self.transport = writer  # type: ignore[assignment]
        # One per request whose response is not complete yet, oldest first (pipelined requests
        # are answered in order).
        self._unanswered: collections.deque[dict[object, object]] = collections.deque()
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._heard_at = self.loop.time()
        self._start_head_timer()
        # While a body the app answered without is drained: the bytes it may still take, the
        # time it may still take, and whether the connection closes when it is over.
        self._drain_left = 0
        self._drain_timer: asyncio.TimerHandle | None = None
        self._close_after_drain = False

    def data_received(self, data: bytes) -> None:
        self._heard_at = self.loop.time()
        super().data_received(data)

    def on_message_begin(self) -> None:
        if self.transport.is_closing():
            return  # a request pipelined after one that closes the connection: never served
        super().on_message_begin()
        gone: dict[object, object] = {}
        self._unanswered.append(gone)
        self.scope["extensions"] = {CLIENT_GONE: gone}
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.transport.is_closing():
            return
        super().on_headers_complete()
        self._watch_idle()  # a body, if one follows, has to keep coming

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if app is service_unavailable:  # past limit_concurrency
            extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})
            extensions[OVER_CONNECTION_LIMIT] = self.limit_concurrency
            app = self.app
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        writer = self.transport
        if isinstance(writer, CoalescingWriter):
            writer.end_response()
        if self._unanswered:
            self._unanswered.popleft()
        super().on_response_complete()
        if self._body_unread() and not self.transport.is_closing():
            self._start_drain(close_after=False)

    def on_body(self, body: bytes) -> None:
        if self._drain_timer is None:
            super().on_body(body)
            return
        self._drain_left -= len(body)  # discarded: the app has answered already
        if self._drain_left < 0:
            self._end_drain(close=True)

    def on_message_complete(self) -> None:
        if self._drain_timer is None:
            super().on_message_complete()
            return
        self.cycle.more_body = False
        self._end_drain(close=self._close_after_drain)

    def send_400_response(self, msg: str) -> None:
        if self.transport.is_closing():  # a body being drained that does not parse
            self._end_drain(close=True)
        else:
            super().send_400_response(msg)

    def shutdown(self) -> None:
        if self._drain_timer is not None:
            self._end_drain(close=True)
        self._drain_left = -1  # closing now: no drain from now on
        super().shutdown()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._heard_at = self.loop.time()  # the client's turn to read starts now
        self._watch_idle()

    def resume_writing(self) -> None:
        self._heard_at = self.loop.time()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._idle_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._idle_timer = self._drain_timer = None
        super().connection_lost(exc)
        while self._unanswered:
            callback = self._unanswered.popleft().pop("callback", None)
            if callable(callback):
                callback()

    # -- draining a body the app answered without -----------------------------------------------
    def _body_unread(self) -> bool:
        """Whether the current request's body is still arriving after its complete answer."""
        cycle = self.cycle
        return cycle is not None and cycle.response_complete and cycle.more_body

    def _linger(self) -> bool:
        """The connection is to close: drain first if its request's body is still arriving
        (True), shutting the gateway's side for writing so the client sees its answer end."""
        if self._drain_timer is not None or self._drain_left < 0 or not self._body_unread():
            return False
        if self._socket.is_closing() or not self._start_drain(close_after=True):
            return False
        if self._socket.can_write_eof():  # after the answer, which the writer has flushed
            self._socket.write_eof()
        self.flow.resume_reading()  # paused while the app did not read the body
        return True

    def _start_drain(self, *, close_after: bool) -> bool:
        """Discard the rest of the body as it comes, within bounds; False (and the connection
        closed, if it was to stay open) when its stated length is past them already."""
        stated = stated_length(self.headers)
        if stated is not None and stated > self.drain_max_bytes:
            if not close_after:
                self._close()
            return False
        self._drain_left = self.drain_max_bytes
        self._close_after_drain = close_after
        self._drain_timer = self.loop.call_later(self.drain_timeout_s, self._end_drain, True)
        return True

    def _end_drain(self, close: bool) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if close:
            self._close()
        else:
            self._start_head_timer()  # the connection waits for its next request

    def _close(self) -> None:
        self._drain_left = -1  # no drain from now on
        self.transport.close()

    # -- timeouts --------------------------------------------------------------------------------
    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _watch_idle(self) -> None:
        if self._idle_timer is None:
            self._idle_timer = self.loop.call_later(self.idle_timeout_s, self._check_idle)

    def _waiting_on_client(self) -> bool:
        cycle = self.cycle
        body_due = cycle is not None and cycle.more_body and not cycle.response_complete
        if body_due and self.flow.read_paused:  # the app has not asked for more yet
            self._heard_at = self.loop.time()
        return body_due or self.flow.write_paused

    def _check_idle(self) -> None:
        self._idle_timer = None
        if not self._waiting_on_client():
            return
        silent = self.loop.time() - self._heard_at
        if silent >= self.idle_timeout_s:
            self.transport.abort()  # not close(): that would wait to write what it holds
        else:
            self._idle_timer = self.loop.call_later(self.idle_timeout_s - silent, self._check_idle)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def stated_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The ``Content-Length`` of a request's (lower-cased) headers, if it states a valid one.

    >>> stated_length([(b"host", b"x"), (b"content-length", b"42")]), stated_length([])
    (42, None)
    """
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None
