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

A client holds a connection only while it keeps its side going: the head of each request must
arrive whole within the header timeout (from the first byte, or from connecting), and while the
gateway waits on the client (for the rest of a request body, or for it to read more of an answer)
it may be silent for the idle timeout at most. Then the connection is closed, which the app sees
as the client gone. (uvicorn's own ``timeout_keep_alive`` covers the wait between requests.)

>>> uvicorn.Config(app, http=GatewayHttpProtocol.with_timeouts(10, 30))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from monitor.config import DEFAULT_GATEWAY_HEADER_TIMEOUT_S, DEFAULT_GATEWAY_IDLE_TIMEOUT_S

#: The scope extension (ASGI ``scope["extensions"]``) that tells the app its client is gone.
CLIENT_GONE: Final = "longcat_monitor.client_gone"


class CoalescingWriter:
    """A transport's writes, gathered as described above; everything else passes through.

    The bytes go out in the order written; closing writes what is held first.
    """

    __slots__ = ("_at_head", "_head_held", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._at_head = True  # the next write is the head of a response
        self._head_held = False

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
        if self._transport.is_closing():
            return  # the connection is gone: nothing can be written
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
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`CoalescingWriter`, with :data:`CLIENT_GONE`
    and the header and idle timeouts."""

    header_timeout_s: float = DEFAULT_GATEWAY_HEADER_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_GATEWAY_IDLE_TIMEOUT_S

    @classmethod
    def with_timeouts(
        cls, header_timeout_s: float, idle_timeout_s: float
    ) -> type[GatewayHttpProtocol]:
        """This protocol with other timeouts (uvicorn builds one per connection from a class)."""
        attributes = {"header_timeout_s": header_timeout_s, "idle_timeout_s": idle_timeout_s}
        return type(cls.__name__, (cls,), attributes)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.transport = CoalescingWriter(self.transport, self.loop)  # type: ignore[assignment]
        # One per request whose response is not complete yet, oldest first (pipelined requests
        # are answered in order).
        self._unanswered: collections.deque[dict[object, object]] = collections.deque()
        self._head_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._heard_at = self.loop.time()
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        self._heard_at = self.loop.time()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        gone: dict[object, object] = {}
        self._unanswered.append(gone)
        self.scope["extensions"] = {CLIENT_GONE: gone}
        self._start_head_timer()

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        self._watch_idle()  # a body, if one follows, has to keep coming

    def on_response_complete(self) -> None:
        writer = self.transport
        if isinstance(writer, CoalescingWriter):
            writer.end_response()
        if self._unanswered:
            self._unanswered.popleft()
        super().on_response_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._heard_at = self.loop.time()  # the client's turn to read starts now
        self._watch_idle()

    def resume_writing(self) -> None:
        self._heard_at = self.loop.time()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._idle_timer = None
        super().connection_lost(exc)
        while self._unanswered:
            callback = self._unanswered.popleft().pop("callback", None)
            if callable(callback):
                callback()

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
