"""The gateway's way to the upstream: HTTP/1.1 on asyncio, kept-alive connections, httptools.

:class:`UpstreamTransport` is an ``httpx2`` async transport, so the monitored transport wraps it as
it wraps any other. It does the one job the gateway needs (a request with its body in hand, a
response relayed as its pieces arrive) without the general machinery of ``httpcore``: each
connection is an :class:`asyncio.Protocol` fed by the event loop, its response parsed by httptools,
and the waiting of a forwarded call costs one future per wake-up. Failures raise the ``httpx2``
exceptions ``httpcore`` would raise in the same place (``ConnectError``, ``ConnectTimeout``,
``ReadTimeout``, ``RemoteProtocolError``), so 502/504 answers and recorded error classes are the
same whichever transport is underneath.

>>> transport = UpstreamTransport()  # doctest: +SKIP
>>> response = await transport.handle_async_request(httpx2.Request("GET", url))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import httptools
import httpx2

if TYPE_CHECKING:
    from monitor.config import Settings

#: Connections to one upstream open at once (idle or busy); more calls wait for one to be free.
DEFAULT_MAX_CONNECTIONS: Final = 200
#: Idle connections kept per upstream for the next call.
DEFAULT_MAX_IDLE: Final = 50
#: An idle connection older than this is closed rather than reused (httpx's default too).
KEEPALIVE_EXPIRY_S: Final = 5.0
#: Response bytes held for a slow reader before the connection stops reading from the upstream.
READ_BUFFER_LIMIT: Final = 256 * 1024
#: How long closing the transport waits for its connections to end (a TLS close takes a round
#: trip) before it drops the ones left.
CLOSE_TIMEOUT_S: Final = 1.0
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_NO_BODY_METHODS: Final = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})

Origin = tuple[str, str, int]


class _Connection(asyncio.Protocol):
    """One kept-alive connection; holds the state of the response being read on it."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.ended: asyncio.Future[None] | None = None  # done once the connection is lost
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._start_response()

    def _start_response(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: Exception | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.ended = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx2.RemoteProtocolError(f"invalid response from the upstream: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(None)
        if self.complete or self.error is not None:
            return
        if not self.head_done:
            self._fail(
                httpx2.RemoteProtocolError("Server disconnected without sending a response.")
            )
        elif self._reads_to_eof() and exc is None:
            self.on_message_complete()
        else:
            self._fail(
                httpx2.RemoteProtocolError(
                    "peer closed connection without sending complete message body"
                )
            )

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:
            return  # informational (100 Continue): the real answer follows
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_BUFFER_LIMIT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:  # the end of an informational answer
            self.status, self.reason, self.headers = 0, b"", []
            return
        self.complete = True
        self.keep_alive = not self.closed and self._parser.should_keep_alive()
        self._wake()

    # -- used by the transport -------------------------------------------------------------------
    def send(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        self._start_response()
        self.transport.writelines((head, body))

    def take_chunk(self) -> bytes:
        chunk = self.chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= READ_BUFFER_LIMIT // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def wait(self, timeout: float | None) -> None:
        """Until the next event of the response (head, body piece, end, failure)."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, self._time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _reads_to_eof(self) -> bool:
        """Whether the body is framed by the connection's end (no length, not chunked)."""
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @staticmethod
    def _time_out(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(httpx2.ReadTimeout("timed out waiting for the upstream"))


class _ResponseStream(httpx2.AsyncByteStream):
    """The body of one response, piece by piece as it arrives; closing frees the connection."""

    def __init__(
        self,
        transport: UpstreamTransport,
        connection: _Connection,
        read_timeout: float | None,
        reusable: bool,
    ) -> None:
        self._transport = transport
        self._connection = connection
        self._read_timeout = read_timeout
        self._reusable = reusable
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while True:
            if connection.chunks:
                yield connection.take_chunk()
            elif connection.complete or not self._reusable:
                return
            elif connection.error is not None:
                raise connection.error
            else:
                await connection.wait(self._read_timeout)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            connection = self._connection
            keep = self._reusable and connection.complete and connection.keep_alive
            self._transport.release(connection, keep=keep)


class UpstreamTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 to any origin, over kept-alive connections (TLS for ``https``).

    Timeouts come from the request's ``timeout`` extension (``connect``, ``read``, ``pool``), as
    an ``httpx2`` client sets them; a missing one means no limit.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_idle: int = DEFAULT_MAX_IDLE,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_idle = max_idle
        self._ssl_context = ssl_context
        self._slots: asyncio.Semaphore = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()

    @property
    def connections(self) -> list[Any]:
        """The connections open now, idle or in use (for tests and diagnostics)."""
        idle = [c for pool in self._idle.values() for c in pool if not c.closed]
        return idle + [c for c in self._busy if not c.closed]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 80))
        body = await _body(request)
        head = _request_head(request)
        slots = self._slots
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), timeouts.get("pool"))
            except TimeoutError as exc:
                raise httpx2.PoolTimeout("no free connection to the upstream") from exc
        else:
            await slots.acquire()
        connection: _Connection | None = None
        try:
            connection = self._idle_connection(origin) or await self._connect(
                origin, timeouts.get("connect")
            )
            self._busy.add(connection)
            connection.send(head, body)
            while not connection.head_done:
                if connection.error is not None:
                    raise connection.error
                await connection.wait(timeouts.get("read"))
        except BaseException:
            if connection is not None:
                self.release(connection, keep=False)
            else:
                slots.release()
            raise
        stream = _ResponseStream(
            self, connection, timeouts.get("read"), reusable=request.method != "HEAD"
        )
        return httpx2.Response(
            connection.status,
            headers=connection.headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason},
        )

    def release(self, connection: _Connection, *, keep: bool) -> None:
        """A response is done with ``connection``: pool it for the next call, or close it."""
        if connection in self._busy:
            self._busy.discard(connection)
            self._slots.release()
        pool = self._idle.setdefault(connection.origin, [])
        if keep and not connection.closed and len(pool) < self._max_idle:
            connection.idle_since = time.monotonic()
            pool.append(connection)
        else:
            connection.close()

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        pool = self._idle.get(origin)
        now = time.monotonic()
        while pool:
            connection = pool.pop()
            if not connection.closed and now - connection.idle_since < KEEPALIVE_EXPIRY_S:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        context = self._tls_context() if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(origin),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                ),
                timeout,
            )
        except TimeoutError as exc:
            raise httpx2.ConnectTimeout(f"no connection to {host}:{port} in time") from exc
        except OSError as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = httpx2.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    async def aclose(self) -> None:
        """Close every connection and wait (up to :data:`CLOSE_TIMEOUT_S`) until each has ended,
        so none is left open under an event loop about to close."""
        connections = [c for pool in self._idle.values() for c in pool] + list(self._busy)
        self._idle.clear()
        for connection in connections:
            connection.close()
        ending = [c.ended for c in connections if c.ended is not None and not c.ended.done()]
        if not ending:
            return
        _, late = await asyncio.wait(ending, timeout=CLOSE_TIMEOUT_S)
        if late:
            for connection in connections:
                if connection.transport is not None and connection.ended in late:
                    connection.transport.abort()
            await asyncio.wait(late, timeout=CLOSE_TIMEOUT_S)


async def _body(request: httpx2.Request) -> bytes:
    try:
        return request.content
    except httpx2.RequestNotRead:  # a streamed upload: the gateway never sends one
        return await request.aread()


def _request_head(request: httpx2.Request) -> bytes:
    """Request line and headers, with ``Content-Length`` where the request did not frame its
    body (a streamed upload, read whole by :func:`_body`)."""
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    framed = False
    for name, lowered, value in request.headers._list:  # (raw name, lower-cased, value)
        if lowered == b"transfer-encoding":
            continue  # the body goes out whole, with its length
        framed = framed or lowered == b"content-length"
        parts += (name, b": ", value, b"\r\n")
    if not framed and (request.content or request.method not in _NO_BODY_METHODS):
        parts += (b"Content-Length: ", str(len(request.content)).encode("ascii"), b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def new_upstream_transport(settings: Settings) -> httpx2.AsyncBaseTransport:
    """The transport the gateway forwards with (before it is monitored).

    An :class:`UpstreamTransport`, unless the environment names a proxy for the upstream
    (``HTTPS_PROXY``, ``ALL_PROXY``, … less ``NO_PROXY``): then ``httpx2``'s own transport,
    through that proxy, as an ``httpx2`` client would go.
    """
    url = httpx2.URL(settings.upstream_url)
    proxy = environment_proxy(url)
    if proxy is not None:
        return httpx2.AsyncHTTPTransport(
            proxy=proxy,
            limits=httpx2.Limits(
                max_connections=DEFAULT_MAX_CONNECTIONS, max_keepalive_connections=DEFAULT_MAX_IDLE
            ),
        )
    return UpstreamTransport()


def environment_proxy(url: httpx2.URL) -> str | None:
    """The proxy the environment's ``*_PROXY`` variables name for ``url``, if any; one given as
    ``host:port`` is an ``http://`` proxy, as ``httpx2`` and curl take it."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
