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

>>> uvicorn.Config(app, http=GatewayHttpProtocol)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
    """uvicorn's httptools protocol over a :class:`CoalescingWriter`, with :data:`CLIENT_GONE`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.transport = CoalescingWriter(self.transport, self.loop)  # type: ignore[assignment]
        # One per request whose response is not complete yet, oldest first (pipelined requests
        # are answered in order).
        self._unanswered: collections.deque[dict[object, object]] = collections.deque()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        gone: dict[object, object] = {}
        self._unanswered.append(gone)
        self.scope["extensions"] = {CLIENT_GONE: gone}

    def on_response_complete(self) -> None:
        writer = self.transport
        if isinstance(writer, CoalescingWriter):
            writer.end_response()
        if self._unanswered:
            self._unanswered.popleft()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        while self._unanswered:
            callback = self._unanswered.popleft().pop("callback", None)
            if callable(callback):
                callback()
