"""The gateway's ASGI app: ``/openai/...`` and ``/anthropic/...`` forwarded to the upstream.

Every call goes out through an ``httpx2.AsyncClient`` wrapped by :func:`monitor.instrument`
(``source="gateway"``), so it is recorded by the same monitored transport as a wrapped SDK call.
The client gets the upstream's status, headers (less hop-by-hop ones) and raw body bytes, still
compressed if they were; a stream is relayed chunk by chunk as it arrives. The key travels upstream
unchanged and is kept only as the transport keeps it: as a fingerprint.

>>> app = create_gateway_app(load_settings())  # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8787)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Final

import anyio
import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from monitor.fingerprint import key_from_headers, key_id
from monitor.gateway.errors import (
    GATEWAY_TOKEN,
    NOT_PROXIED,
    QUOTA_EXCEEDED,
    UPSTREAM_TIMEOUT,
    UPSTREAM_UNREACHABLE,
    ErrorAnswer,
    gateway_error,
)
from monitor.gateway.guard import QuotaGuard
from monitor.instrument import SupportsSubmit, instrument
from monitor.records import CallRecord
from monitor.safety import swallow

if TYPE_CHECKING:
    from monitor.config import Settings

#: Where clients send the gateway's access token (or ``Proxy-Authorization: Bearer …``).
GATEWAY_TOKEN_HEADER: Final = "x-gateway-token"
#: Headers that describe one connection, not the message: never forwarded either way.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "trailers",
        "upgrade",
        "host",
        "content-length",
        GATEWAY_TOKEN_HEADER,
    }
)
UPSTREAM_MAX_CONNECTIONS: Final = 200
UPSTREAM_MAX_KEEPALIVE: Final = 50
PROXIED_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

RawHeaders = list[tuple[bytes, bytes]]


class UpstreamCutError(Exception):
    """The upstream broke off a body already being relayed; the client's connection is dropped
    the same way, so it sees the same incomplete body it would have seen from LongCat."""


def filter_headers(raw: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """``raw`` (lower-cased) without hop-by-hop headers, ``proxy-*`` ones and any that the
    ``Connection`` header names."""
    pairs = [(name.lower(), value) for name, value in raw]
    named = {
        token.strip().lower().encode()
        for name, value in pairs
        if name == b"connection"
        for token in value.decode("latin-1").split(",")
    }
    return [
        (name, value)
        for name, value in pairs
        if name.decode("latin-1") not in HOP_BY_HOP
        and not name.startswith(b"proxy-")
        and name not in named
    ]


def new_upstream_client(settings: Settings) -> httpx2.AsyncClient:
    """The client the gateway forwards with (before it is instrumented)."""
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(
            settings.gateway_timeout_s, connect=settings.gateway_connect_timeout_s
        ),
        limits=httpx2.Limits(
            max_connections=UPSTREAM_MAX_CONNECTIONS,
            max_keepalive_connections=UPSTREAM_MAX_KEEPALIVE,
        ),
        follow_redirects=False,
    )


class _GatewaySubmit:
    """Hands each record to the recorder, and tells the quota guard about it first."""

    def __init__(self, recorder: SupportsSubmit | None, guard: QuotaGuard | None) -> None:
        self._recorder = recorder
        self._guard = guard

    def submit(self, record: CallRecord) -> None:
        if self._guard is not None:
            with swallow("counting a gateway call for the quota guard"):
                self._guard.note(record)
        if self._recorder is not None:
            self._recorder.submit(record)
        else:
            from monitor.recorder import get_recorder

            get_recorder().submit(record)


async def _send_answer(send: Send, answer: ErrorAnswer) -> None:
    body = answer.encoded()
    headers: RawHeaders = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in answer.headers.items()),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _answer_response(answer: ErrorAnswer) -> Response:
    return Response(
        answer.encoded(),
        status_code=answer.status,
        media_type="application/json",
        headers=answer.headers,
    )


class ProxyExchange(Response):
    """One forwarded call, run when Starlette sends the response.

    A watcher waits for the client to go away; if it does, the exchange is cancelled, which closes
    the upstream connection, and the monitored transport records the call as ``client_closed``.
    """

    def __init__(self, client: httpx2.AsyncClient, request: httpx2.Request, path: str) -> None:
        self._client = client
        self._request = request
        self._path = path
        self._started = False
        self._failure: Exception | None = None
        self.client_disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, receive, group.cancel_scope)
            try:
                await self._exchange(send)
            finally:
                group.cancel_scope.cancel()
        if self._failure is not None:
            raise UpstreamCutError(str(self._failure)) from self._failure

    async def _watch(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                self.client_disconnected = True
                scope.cancel()
                return

    async def _exchange(self, send: Send) -> None:
        try:
            upstream = await self._client.send(self._request, stream=True)
        except httpx2.TimeoutException as exc:
            await self._fail(send, UPSTREAM_TIMEOUT, "did not answer in time", exc)
            return
        except httpx2.TransportError as exc:
            await self._fail(send, UPSTREAM_UNREACHABLE, "could not be reached", exc)
            return
        try:
            await self._relay(upstream, send)
        except httpx2.TransportError as exc:
            if self._started:
                self._failure = exc
            elif isinstance(exc, httpx2.TimeoutException):
                await self._fail(send, UPSTREAM_TIMEOUT, "did not answer in time", exc)
            else:
                await self._fail(send, UPSTREAM_UNREACHABLE, "broke off its answer", exc)
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()

    async def _relay(self, upstream: httpx2.Response, send: Send) -> None:
        headers = filter_headers(upstream.headers.raw)
        start: Message = {
            "type": "http.response.start",
            "status": upstream.status_code,
            "headers": headers,
        }
        content_type = upstream.headers.get("content-type", "")
        if content_type.lower().startswith("text/event-stream"):
            self._started = True
            await send(start)
            async for chunk in upstream.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body = b"".join([chunk async for chunk in upstream.aiter_raw()])
        headers.append((b"content-length", str(len(body)).encode()))
        self._started = True
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _fail(self, send: Send, kind: Any, what: str, exc: Exception) -> None:
        upstream = f"{self._request.url.scheme}://{self._request.url.netloc.decode('ascii')}"
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        message = f"The LongCat API at {upstream} {what} (longcat-monitor gateway; {detail})."
        self._started = True
        await _send_answer(send, gateway_error(self._path, kind, message))


class Gateway:
    """The request handler: access token, quota guard, then the forwarded exchange."""

    def __init__(
        self, settings: Settings, client: httpx2.AsyncClient, guard: QuotaGuard | None
    ) -> None:
        self._settings = settings
        self._client = client
        self._guard = guard
        self._upstream = settings.upstream_url.rstrip("/")
        token = settings.gateway_token
        self._token = token.get_secret_value().encode() if token is not None else None
        secret = settings.key_secret
        self._key_secret = secret.get_secret_value() if secret is not None else None

    def token_accepted(self, headers: Any) -> bool:
        if self._token is None:
            return True
        offered = headers.get(GATEWAY_TOKEN_HEADER, "")
        if not offered:
            scheme, _, credentials = headers.get("proxy-authorization", "").partition(" ")
            offered = credentials.strip() if scheme.lower() == "bearer" else ""
        return hmac.compare_digest(offered.encode(), self._token)

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        if not self.token_accepted(request.headers):
            message = (
                "This longcat-monitor gateway needs its access token: send it as "
                f"'{GATEWAY_TOKEN_HEADER}: <token>' or 'Proxy-Authorization: Bearer <token>'."
            )
            return _answer_response(gateway_error(path, GATEWAY_TOKEN, message))
        if self._guard is not None:
            refused = await self._check_quota(request, path)
            if refused is not None:
                return refused
        url = self._upstream + path
        if request.url.query:
            url += "?" + request.url.query
        upstream_request = httpx2.Request(
            request.method,
            url,
            headers=filter_headers(request.headers.raw),
            content=await request.body(),
        )
        return ProxyExchange(self._client, upstream_request, path)

    async def _check_quota(self, request: Request, path: str) -> Response | None:
        assert self._guard is not None
        raw_key = key_from_headers(
            request.headers.get("authorization"), request.headers.get("x-api-key")
        )
        if raw_key is None:
            return None
        refusal = await self._guard.check(key_id(raw_key, self._key_secret))
        if refusal is None:
            return None
        answer = gateway_error(
            path,
            QUOTA_EXCEEDED,
            refusal.message,
            extra={"code": QUOTA_EXCEEDED.code, "retry_after": refusal.retry_after_s},
            headers={"retry-after": str(refusal.retry_after_s)},
        )
        return _answer_response(answer)


def create_gateway_app(
    settings: Settings,
    *,
    upstream_client: httpx2.AsyncClient | None = None,
    recorder: SupportsSubmit | None = None,
    guard: QuotaGuard | None = None,
) -> Starlette:
    """The gateway as a Starlette app, forwarding to ``settings.upstream_url``.

    ``upstream_client`` (default: a new ``httpx2.AsyncClient`` with the gateway's timeouts) is
    instrumented with ``source="gateway"``; records go to ``recorder`` (default: the process's
    recorder, writing to ``MONITOR_DATABASE_URL``). The quota guard is built from the settings
    when ``MONITOR_GATEWAY_QUOTA_GUARD`` is on, unless ``guard`` is given.

    >>> settings = load_settings(upstream_url="http://127.0.0.1:8900")
    >>> app = create_gateway_app(settings)  # doctest: +SKIP
    """
    if guard is None and settings.gateway_quota_guard:
        guard = QuotaGuard(settings)
    client = upstream_client if upstream_client is not None else new_upstream_client(settings)
    instrument(client, recorder=_GatewaySubmit(recorder, guard), source="gateway")
    gateway = Gateway(settings, client, guard)

    async def not_proxied(request: Request, exc: Exception) -> Response:
        message = (
            f"{request.method} {request.url.path}: the longcat-monitor gateway forwards only "
            "/openai/... and /anthropic/..."
        )
        return _answer_response(gateway_error(request.url.path, NOT_PROXIED, message))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()
            if guard is not None:
                guard.close()

    routes = [
        Route("/openai/{rest:path}", gateway.handle, methods=PROXIED_METHODS),
        Route("/anthropic/{rest:path}", gateway.handle, methods=PROXIED_METHODS),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_proxied}, lifespan=lifespan)
