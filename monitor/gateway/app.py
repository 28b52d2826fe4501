"""The gateway's ASGI app: ``/openai/...`` and ``/anthropic/...`` forwarded to the upstream.

Every call goes out through the monitored transport
(:func:`~monitor.instrument.instrument_transport`, ``source="gateway"``) around
:class:`~monitor.gateway.upstream.UpstreamTransport`, so it is recorded exactly as a wrapped SDK
call is. The client gets the upstream's status, headers (less hop-by-hop ones) and raw body bytes,
still compressed if they were; a stream, or any body of no stated length, is relayed piece by
piece as it arrives. The key travels upstream unchanged and is kept only as the transport keeps
it: as a fingerprint. A plain ASGI app: the hot path is one function call deep.

Before anything goes upstream the gateway refuses, each in the API's own error shape: a path
that is not ``/openai/…`` or ``/anthropic/…`` as sent (404), one with dot segments or encoded
separators (400; what passes is forwarded byte for byte), credentials that name two keys (400),
a missing access token (401), a key over its quota (429, with the guard on), a body over
``MONITOR_GATEWAY_MAX_BODY_BYTES`` (413), a call past ``MONITOR_GATEWAY_MAX_CONCURRENCY`` at once
(503, :mod:`monitor.gateway.capacity`). None of these refusals reaches LongCat, and none is
recorded: the record of a call is LongCat's answer to it.

>>> app = create_gateway_app(load_settings())  # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8787)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import httpx2

from monitor.capture.fingerprint import key_from_headers, key_id
from monitor.capture.transport import header_names, pick_headers
from monitor.gateway.capacity import CallCap
from monitor.gateway.errors import (
    AMBIGUOUS_CREDENTIALS,
    GATEWAY_TOKEN,
    INVALID_PATH,
    METHOD_NOT_ALLOWED,
    NOT_PROXIED,
    QUOTA_EXCEEDED,
    REQUEST_TOO_LARGE,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
    ErrorAnswer,
    ErrorKind,
    gateway_error,
)
from monitor.gateway.guard import QuotaGuard
from monitor.gateway.protocol import CLIENT_GONE, stated_length
from monitor.gateway.request_checks import credential_problem, path_problem
from monitor.gateway.upstream import new_upstream_transport
from monitor.instrument import SupportsSubmit, instrument_transport
from monitor.records import CallRecord
from monitor.safety import swallow

if TYPE_CHECKING:
    from monitor.config import Settings

Message = dict[str, Any]
Receive = Any  # Callable[[], Awaitable[Message]]
Send = Any  # Callable[[Message], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

#: Where clients send the gateway's access token (or ``Proxy-Authorization: Bearer …``).
GATEWAY_TOKEN_HEADER: Final = "x-gateway-token"
#: Headers that describe one connection, not the message: never forwarded either way.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"trailers",
        b"upgrade",
        b"host",
        b"content-length",
        GATEWAY_TOKEN_HEADER.encode(),
    }
)
#: ``Connection`` values that name no other header to drop.
_CONNECTION_OPTIONS: Final = frozenset({b"keep-alive", b"close", b""})
PROXIED_PREFIXES: Final = (b"/openai/", b"/anthropic/")
PROXIED_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: Headers the gateway itself reads from a client's request.
_CLIENT_HEADERS: Final = header_names(
    GATEWAY_TOKEN_HEADER, "proxy-authorization", "authorization", "x-api-key"
)
_METHODS_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH"})
#: Upstream URLs kept parsed, by path and query (a gateway sees few distinct ones).
URL_CACHE_SIZE: Final = 256


class ClientGoneError(Exception):
    """The client left before its request had arrived whole: nothing is forwarded."""


class UpstreamCutError(Exception):
    """The upstream broke off a body already being relayed; the client's connection is dropped
    the same way, so it sees the same incomplete body it would have seen from LongCat."""


def filter_headers(raw: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """``raw`` (lower-cased) without hop-by-hop headers, ``proxy-*`` ones and any that the
    ``Connection`` header names."""
    kept: RawHeaders = []
    named: set[bytes] = set()
    for name, value in raw:
        name = name.lower()
        if name in HOP_BY_HOP or name.startswith(b"proxy-"):
            if name == b"connection":  # usually "keep-alive" or "close": nothing more to drop
                named.update(token.strip().lower() for token in value.split(b","))
                named -= _CONNECTION_OPTIONS
        else:
            kept.append((name, value))
    if named:  # rare: headers the client or upstream declared hop-by-hop
        return [(name, value) for name, value in kept if name not in named]
    return kept


class _GatewaySubmit:
    """Hands each record to the recorder, and tells the quota guard about it first."""

    def __init__(self, recorder: SupportsSubmit, guard: QuotaGuard) -> None:
        self._recorder = recorder
        self._guard = guard

    def submit(self, record: CallRecord) -> None:
        with swallow("counting a gateway call for the quota guard"):
            self._guard.note(record)
        self._recorder.submit(record)


def _process_recorder() -> SupportsSubmit:
    """The process's recorder, its writer started now: the first call does not wait for it to be
    imported and built, and a spool an earlier run left behind is replayed right away."""
    from monitor.recording.recorder import get_recorder

    recorder = get_recorder()
    with swallow("starting the call-record writer"):
        recorder.start()
    return recorder


async def _send_answer(send: Send, answer: ErrorAnswer) -> None:
    body = answer.encoded()
    headers: RawHeaders = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in answer.headers.items()),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes (the rest is left unread);
    raises :class:`ClientGoneError` if the client leaves first."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGoneError
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None  # the usual request: one piece, not copied
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
    return b"".join(parts)


class ProxyExchange:
    """One forwarded call, from the upstream request to the last byte relayed.

    A watcher waits for the client to go away; if it does, the exchange is cancelled, which closes
    the upstream connection, and the monitored transport records the call as ``client_closed``.
    """

    def __init__(
        self, transport: httpx2.AsyncBaseTransport, request: httpx2.Request, path: str
    ) -> None:
        self._transport = transport
        self._request = request
        self._path = path
        self._started = False
        self._answered = False
        self._failure: Exception | None = None
        self.client_disconnected = False

    async def run(self, receive: Receive, send: Send, gone: dict[str, Any] | None) -> None:
        """Forward the call and relay the answer. ``gone`` is the server's
        :data:`~monitor.gateway.protocol.CLIENT_GONE` extension, if it has it; else a task waits
        on ``receive()`` for the client to go away."""
        task = asyncio.current_task()
        assert task is not None
        watcher = None
        if gone is not None:
            gone["callback"] = lambda: self._client_gone(task)
        else:
            watcher = asyncio.create_task(self._watch(receive, task))
        try:
            await self._exchange(send)
        except asyncio.CancelledError:
            if not self.client_disconnected:
                raise
            task.uncancel()  # our own cancellation: the client is gone, nothing to send
        finally:
            self._answered = True
            if watcher is not None:
                watcher.cancel()
            elif gone is not None:
                gone.pop("callback", None)
        if self._failure is not None:
            raise UpstreamCutError(str(self._failure)) from self._failure

    async def _watch(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._client_gone(task)
                return

    def _client_gone(self, task: asyncio.Task[Any]) -> None:
        if not self._answered:  # not the end of a response sent in full
            self.client_disconnected = True
            task.cancel()

    async def _exchange(self, send: Send) -> None:
        try:
            upstream = await self._transport.handle_async_request(self._request)
        except httpx2.TimeoutException as exc:
            await self._fail(send, UPSTREAM_TIMEOUT, "did not answer in time", exc)
            return
        except httpx2.TransportError as exc:
            await self._fail(send, UPSTREAM_UNREACHABLE, "could not be reached", exc)
            return
        stream = upstream.stream
        assert isinstance(stream, httpx2.AsyncByteStream)
        try:
            await self._relay(upstream, stream, send)
        except httpx2.TransportError as exc:
            if self._started:
                self._failure = exc
            elif isinstance(exc, httpx2.TimeoutException):
                await self._fail(send, UPSTREAM_TIMEOUT, "did not answer in time", exc)
            else:
                await self._fail(send, UPSTREAM_UNREACHABLE, "broke off its answer", exc)
        finally:
            await stream.aclose()

    async def _relay(
        self, upstream: httpx2.Response, stream: httpx2.AsyncByteStream, send: Send
    ) -> None:
        headers = filter_headers(upstream.headers.raw)
        start: Message = {
            "type": "http.response.start",
            "status": upstream.status_code,
            "headers": headers,
        }
        content_type = next((value for name, value in headers if name == b"content-type"), b"")
        if content_type.lower().startswith(b"text/event-stream"):
            self._started = True
            await send(start)
            async for chunk in stream:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._answered = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        length = upstream.headers.get("content-length", "")
        if upstream.status_code in (204, 304):
            # No body follows, whatever the headers say.
            body = b"".join([chunk async for chunk in stream])
            headers.append((b"content-length", str(len(body)).encode()))
            self._started = self._answered = True
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        if length.isdigit():
            # The upstream's length holds (the monitor rewrites only event streams).
            headers.append((b"content-length", length.encode("latin-1")))
        # (Without one the server frames the body, chunked, and it is never held whole.) Each
        # piece goes on when the next arrives, so the last one ends the answer once the body has
        # ended and the call's record is handed over: the client never has its answer before the
        # monitor.
        held = b""
        async for chunk in stream:
            if chunk:
                if held:
                    await self._send_piece(start, send, held, more=True)
                held = chunk
        self._answered = True
        await self._send_piece(start, send, held, more=False)

    async def _send_piece(self, start: Message, send: Send, piece: bytes, *, more: bool) -> None:
        if not self._started:
            self._started = True
            await send(start)
        await send({"type": "http.response.body", "body": piece, "more_body": more})

    async def _fail(self, send: Send, kind: ErrorKind, what: str, exc: Exception) -> None:
        upstream = f"{self._request.url.scheme}://{self._request.url.netloc.decode('ascii')}"
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        message = f"The LongCat API at {upstream} {what} (longcat-monitor gateway; {detail})."
        self._started = self._answered = True
        await _send_answer(send, gateway_error(self._path, kind, message))


class GatewayApp:
    """The ASGI app: access token, quota guard, then the forwarded exchange."""

    def __init__(
        self, settings: Settings, transport: httpx2.AsyncBaseTransport, guard: QuotaGuard | None
    ) -> None:
        self._transport = transport
        self._guard = guard
        self._upstream = settings.upstream_url.rstrip("/")
        self._host = httpx2.URL(self._upstream).netloc
        self._upstream_path = httpx2.URL(self._upstream).raw_path.rstrip(b"/")
        self._max_body = settings.gateway_max_body_bytes
        self.cap = CallCap(settings.gateway_max_concurrency)
        self._urls: dict[bytes, httpx2.URL] = {}
        self._timeouts = httpx2.Timeout(
            settings.gateway_timeout_s, connect=settings.gateway_connect_timeout_s
        ).as_dict()
        token = settings.gateway_token
        self._token = token.get_secret_value().encode() if token is not None else None
        secret = settings.key_secret
        self._key_secret = secret.get_secret_value() if secret is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.cap.admit(scope)
            if refusal is not None:
                await _send_answer(send, refusal)
                return
            try:
                await self._serve(scope, receive, send)
            finally:
                self.cap.release()
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    def token_accepted(self, headers: dict[str, str]) -> bool:
        if self._token is None:
            return True
        offered = headers.get(GATEWAY_TOKEN_HEADER, "")
        if not offered:
            scheme, _, credentials = headers.get("proxy-authorization", "").partition(" ")
            offered = credentials.strip() if scheme.lower() == "bearer" else ""
        return hmac.compare_digest(offered.encode(), self._token)

    async def _serve(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        # The path as sent, never decoded: it is what is checked and what is forwarded.
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1")
        method: str = scope["method"]
        refusal = self._path_refusal(raw_path, path, method)
        if refusal is not None:
            await _send_answer(send, refusal)
            return
        raw_headers: RawHeaders = scope["headers"]
        refusal = await self._refusal(raw_headers, path)
        if refusal is not None:
            await _send_answer(send, refusal)
            return
        url = self._url(raw_path, scope.get("query_string", b""))
        if url is None:
            message = f"{path}: this path would not reach the upstream as it was sent."
            await _send_answer(send, gateway_error(path, INVALID_PATH, message))
            return
        body: bytes | None = None
        if (stated_length(raw_headers) or 0) <= self._max_body:
            try:
                body = await _read_body(receive, self._max_body)
            except ClientGoneError:
                return
        if body is None:
            await _send_answer(send, self._too_large(path))
            return
        request = self._upstream_request(url, method, raw_headers, body)
        extensions = scope.get("extensions")
        gone = extensions.get(CLIENT_GONE) if extensions else None
        await ProxyExchange(self._transport, request, path).run(receive, send, gone)

    def _path_refusal(self, raw_path: bytes, path: str, method: str) -> ErrorAnswer | None:
        if not raw_path.startswith(PROXIED_PREFIXES):
            message = (
                f"{method} {path}: the longcat-monitor gateway forwards only "
                "/openai/... and /anthropic/..."
            )
            return gateway_error(path, NOT_PROXIED, message)
        problem = path_problem(raw_path)
        if problem is not None:
            message = f"{path}: the longcat-monitor gateway forwards no path with {problem}."
            return gateway_error(path, INVALID_PATH, message)
        if method not in PROXIED_METHODS:
            message = f"{method} is not forwarded by the longcat-monitor gateway."
            return gateway_error(path, METHOD_NOT_ALLOWED, message)
        return None

    def _too_large(self, path: str) -> ErrorAnswer:
        message = (
            f"The request body is larger than the {self._max_body:,} bytes this longcat-monitor "
            "gateway forwards (MONITOR_GATEWAY_MAX_BODY_BYTES)."
        )
        # The connection ends with the answer: the server reads and discards the rest of the
        # body first, within bounds (monitor.gateway.protocol), so the client can read it.
        return gateway_error(path, REQUEST_TOO_LARGE, message, headers={"connection": "close"})

    async def _refusal(self, raw_headers: RawHeaders, path: str) -> ErrorAnswer | None:
        """The answer to a call refused for its credentials, the access token or the quota
        guard, else None."""
        problem = credential_problem(raw_headers)
        if problem is not None:
            message = (
                f"This request carries {problem}: send the API key once, as "
                "'Authorization: Bearer <key>' (or 'x-api-key: <key>'), so the key that is "
                "billed is the key that is counted (longcat-monitor gateway)."
            )
            return gateway_error(path, AMBIGUOUS_CREDENTIALS, message)
        if self._token is None and self._guard is None:
            return None
        wanted = pick_headers(raw_headers, _CLIENT_HEADERS)
        if not self.token_accepted(wanted):
            message = (
                "This longcat-monitor gateway needs its access token: send it as "
                f"'{GATEWAY_TOKEN_HEADER}: <token>' or 'Proxy-Authorization: Bearer <token>'."
            )
            return gateway_error(path, GATEWAY_TOKEN, message)
        if self._guard is not None:
            return await self._check_quota(wanted, path)
        return None

    def _upstream_request(
        self, url: httpx2.URL, method: str, raw_headers: RawHeaders, body: bytes
    ) -> httpx2.Request:
        headers = [(b"host", self._host), *filter_headers(raw_headers)]
        if body or method in _METHODS_WITH_BODY:
            headers.append((b"content-length", str(len(body)).encode()))
        request = httpx2.Request(
            method,
            url,
            headers=headers,
            stream=httpx2.ByteStream(body),
            extensions={"timeout": self._timeouts},
        )
        request.read()  # the body as content, for the monitored transport (no copy: one piece)
        return request

    def _url(self, raw_path: bytes, query: bytes) -> httpx2.URL | None:
        """The upstream URL of ``raw_path`` and ``query``; None if parsing it would change the
        path (the URL parser normalises, and what was checked is what must go out)."""
        target = raw_path + b"?" + query if query else raw_path
        url = self._urls.get(target)
        if url is None:
            url = httpx2.URL(self._upstream + target.decode("latin-1"))
            if url.raw_path.partition(b"?")[0] != self._upstream_path + raw_path:
                return None
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[target] = url
        return url

    async def _check_quota(self, headers: dict[str, str], path: str) -> ErrorAnswer | None:
        assert self._guard is not None
        raw_key = key_from_headers(headers.get("authorization"), headers.get("x-api-key"))
        if raw_key is None:
            return None
        refusal = await self._guard.check(key_id(raw_key, self._key_secret))
        if refusal is None:
            return None
        return gateway_error(
            path,
            QUOTA_EXCEEDED,
            refusal.message,
            extra={"code": QUOTA_EXCEEDED.code, "retry_after": refusal.retry_after_s},
            headers={"retry-after": str(refusal.retry_after_s)},
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close the upstream connections and the quota guard."""
        await self._transport.aclose()
        if self._guard is not None:
            self._guard.close()


def create_gateway_app(
    settings: Settings,
    *,
    upstream_transport: httpx2.AsyncBaseTransport | None = None,
    recorder: SupportsSubmit | None = None,
    guard: QuotaGuard | None = None,
) -> GatewayApp:
    """The gateway as an ASGI app, forwarding to ``settings.upstream_url``.

    ``upstream_transport`` (default: :func:`~monitor.gateway.upstream.new_upstream_transport`)
    goes inside the monitored transport with ``source="gateway"``; records go to ``recorder``
    (default: the process's recorder, writing to ``MONITOR_DATABASE_URL``). The quota guard is
    built from the settings when ``MONITOR_GATEWAY_QUOTA_GUARD`` is on, unless ``guard`` is given.

    >>> settings = load_settings(upstream_url="http://127.0.0.1:8900")
    >>> app = create_gateway_app(settings)  # doctest: +SKIP
    """
    if guard is None and settings.gateway_quota_guard:
        guard = QuotaGuard(settings)
    inner = upstream_transport
    if inner is None:
        inner = new_upstream_transport(settings)
    if recorder is None:
        recorder = _process_recorder()
    if guard is not None:
        recorder = _GatewaySubmit(recorder, guard)
    transport = instrument_transport(
        inner, httpx2, recorder=recorder, source="gateway", relayed=True
    )
    return GatewayApp(settings, transport, guard)
