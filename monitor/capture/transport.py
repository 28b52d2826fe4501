"""The monitored transport: one implementation serving httpx and httpx2, sync and async.

It wraps the client's own transport (like OpenTelemetry's httpx instrumentation keeps
``self._transport``), observes each request and the response body as the caller reads it, and
hands a finished :class:`~monitor.records.CallRecord` to the recorder. The caller's bytes,
exceptions and timing are left as they were: our failures are swallowed in one place
(:mod:`monitor.safety`), the caller's own exceptions re-raised unchanged.
"""

from __future__ import annotations

import functools
import types
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from monitor.capture.bodies import (
    RequestFacts,
    api_for_path,
    is_responses_path,
    request_facts,
    with_stream_usage,
)
from monitor.capture.client_decoding import (
    EVERY_CODING,
    ClientDecoding,
    invites_undecoded,
    module_decoding,
    request_decoding,
)
from monitor.capture.clients import client_name
from monitor.capture.fingerprint import key_from_headers, key_hint, key_id
from monitor.capture.labels import MAX_LABEL_CHARS, current_labels
from monitor.capture.observer import CallerDecodeError, CallObserver
from monitor.capture.trace_parent import TRACEPARENT_HEADER, TraceParentReader, header_trace_parent
from monitor.records import CallRecord
from monitor.safety import report_failure
from monitor.scrub import KeyForms

Submit = Callable[[CallRecord], None]

#: Request bodies larger than this are not parsed on the caller's thread.
REQUEST_PARSE_LIMIT: Final = 512 * 1024
RETRY_HEADER: Final = "x-stainless-retry-count"
_REWRITTEN_HEADERS: Final = ("content-encoding", "content-length")
FINGERPRINT_CACHE_SIZE: Final = 256
_NO_KEY: Final[tuple[None, None]] = (None, None)


def header_names(*names: str) -> Mapping[bytes, str]:
    """Header names as :func:`pick_headers` takes them: each lower-case name in bytes, as the
    headers hold it, to the same in str, as it is picked (looked up, not decoded every time)."""
    return {name.lower().encode("latin-1"): name.lower() for name in names}


#: Claude Code names its session in this header; the session is kept as the label ``session``.
SESSION_HEADER: Final = "x-claude-code-session-id"
SESSION_LABEL: Final = "session"
_REQUEST_HEADERS: Final = header_names(
    "authorization", "x-api-key", RETRY_HEADER, "user-agent", SESSION_HEADER, "accept-encoding"
)
#: The response headers the observer reads.
RESPONSE_HEADERS: Final = header_names(
    "x-request-id", "request-id", "retry-after", "content-type", "content-encoding"
)
#: Those, and the ones dropped when the body is rewritten.
_NOTED_HEADERS: Final = {**RESPONSE_HEADERS, **header_names(*_REWRITTEN_HEADERS)}


class CallStarter:
    """Turns a request into an observer (and, for OpenAI streams, a request asking for usage).

    ``relayed``: the bodies go on to a client known only by its requests (the gateway's), taken
    to decode what its ``Accept-Encoding`` accepts, else the client is one of the HTTP module's;
    and with export on, a request's valid ``traceparent`` names the call's parent span first.
    """

    def __init__(
        self,
        submit: Submit,
        key_secret: Callable[[], str | None],
        *,
        source: str = "wrapper",
        trace_parent: TraceParentReader | None = None,
        relayed: bool = False,
    ) -> None:
        self.submit = submit
        self.source = source
        self.relayed = relayed
        #: reads the app's active span; set only while OTLP export is on
        self.trace_parent = trace_parent
        self._key_secret = key_secret
        self._fingerprints: dict[tuple[str | None, str | None], tuple[str | None, str | None]] = {}
        self._key_forms: dict[tuple[str | None, str | None], KeyForms] = {}

    def __repr__(self) -> str:  # the fingerprint cache is keyed by raw keys: never show it
        return f"CallStarter(source={self.source!r})"

    def start(self, request: Any, http: types.ModuleType) -> tuple[CallObserver, Any]:
        url = request.url
        path = url.path
        api = api_for_path(path)
        headers = _picked_from(request.headers, _REQUEST_HEADERS)
        labels = current_labels()
        key_id, key_hint = self._fingerprint(headers.get("authorization"), headers.get("x-api-key"))
        record = CallRecord(  # positionally where it can be: quicker to match than keywords
            datetime.now(UTC),
            api,
            path,
            request.method,
            key_id,
            key_hint,
            labels=dict(labels) if labels else {},
            source=self.source,
            client=client_name(headers.get("user-agent")),
        )
        session = headers.get(SESSION_HEADER)
        if session and SESSION_LABEL not in record.labels:  # a label set in code wins
            record.labels[SESSION_LABEL] = session[:MAX_LABEL_CHARS]
        retry = headers.get(RETRY_HEADER)
        if retry and retry.isdigit():
            record.attempt = int(retry)
        if self.trace_parent is not None:
            record.trace_parent = (
                self.relayed and header_trace_parent(request.headers.get_list(TRACEPARENT_HEADER))
            ) or self.trace_parent()
        body = _request_body(request)
        if body and len(body) <= REQUEST_PARSE_LIMIT and api != "other":
            facts, parsed = request_facts(body)
        else:
            facts, parsed = RequestFacts(), None
        record.model = facts.model
        record.stream = facts.stream
        decoding = EVERY_CODING  # read only where the body may be rewritten
        strip = False
        if (
            api == "openai"
            and facts.stream
            and not facts.wants_stream_usage
            and parsed is not None
            and not is_responses_path(path)  # its streams always end with their usage
        ):
            accept_encoding = headers.get("accept-encoding")
            decoding = self._client_decoding(http, accept_encoding)
            # A body the caller asked for in a coding its client does not decode reaches it as
            # it came, usage chunk and all: then no usage is asked for (it is estimated).
            if not invites_undecoded(decoding, accept_encoding):
                request = _with_body(http, request, with_stream_usage(body, parsed))
                strip = True
        key = self._forms(headers.get("authorization"), headers.get("x-api-key"))
        observer = CallObserver(
            record, facts, self.submit, strip_usage_chunk=strip, client_decoding=decoding, key=key
        )
        return observer, request

    def _client_decoding(
        self, http: types.ModuleType, accept_encoding: str | None
    ) -> ClientDecoding:
        """What the client that reads the body decodes by itself."""
        if self.relayed:
            return request_decoding(accept_encoding)
        return module_decoding(http)

    def _forms(self, authorization: str | None, x_api_key: str | None) -> KeyForms:
        """The forms of every credential these headers carry, for the record to be scrubbed of
        them; cached like the fingerprints."""
        forms = self._key_forms.get((authorization, x_api_key))
        if forms is None:
            credential = (authorization or "").strip()
            credential = credential.partition(" ")[2] or credential  # the value after "Bearer"
            forms = KeyForms(value for value in (credential, x_api_key) if value)
            if len(self._key_forms) >= FINGERPRINT_CACHE_SIZE:
                self._key_forms.clear()
            self._key_forms[authorization, x_api_key] = forms
        return forms

    def _fingerprint(
        self, authorization: str | None, x_api_key: str | None
    ) -> tuple[str | None, str | None]:
        """(key_id, key_hint) of the key these headers carry, (None, None) for none; cached by
        the header values: a process makes many calls with few keys."""
        known = self._fingerprints.get((authorization, x_api_key))
        if known is None:
            raw_key = key_from_headers(authorization, x_api_key)
            known = (key_id(raw_key, self._key_secret()), key_hint(raw_key)) if raw_key else _NO_KEY
            if len(self._fingerprints) >= FINGERPRINT_CACHE_SIZE:
                self._fingerprints.clear()
            self._fingerprints[authorization, x_api_key] = known
        return known


def pick_headers(raw: list[tuple[bytes, bytes]], names: Mapping[bytes, str]) -> dict[str, str]:
    """The wanted headers (lower-case names, from :func:`header_names`) in one pass over a raw
    ``(name, value)`` list. A header given twice is read from its first line, as servers that
    take one value do (Go's ``Header.Get``, Node for ``Authorization``)."""
    picked: dict[str, str] = {}
    for name, value in raw:
        lowered = name.lower()
        if lowered in names and names[lowered] not in picked:
            picked[names[lowered]] = value.decode("latin-1")
    return picked


def _picked_from(headers: Any, names: Mapping[bytes, str]) -> dict[str, str]:
    """:func:`pick_headers` of an httpx/httpx2 ``Headers``, from the list it keeps with every
    name already lower-cased when it has one (both do), else from its raw list."""
    entries = getattr(headers, "_list", None)  # (raw name, lower-case name, value)
    if entries is None:
        return pick_headers(headers.raw, names)
    picked: dict[str, str] = {}
    for _, lowered, value in entries:
        if lowered in names and names[lowered] not in picked:
            picked[names[lowered]] = value.decode("latin-1")
    return picked


def _request_body(request: Any) -> bytes:
    try:
        content = request.content
    except Exception:  # a streaming upload not yet read: leave it alone
        return b""
    return content if isinstance(content, bytes) else b""


def _with_body(http: types.ModuleType, request: Any, body: bytes) -> Any:
    """A copy of ``request`` carrying ``body``; the caller's own request object is untouched."""
    rewritten = object.__new__(type(request))
    rewritten.__dict__.update(request.__dict__)
    rewritten.headers = _with_content_length(request.headers, len(body))
    rewritten.stream = http.ByteStream(body)
    rewritten._content = body
    return rewritten


_CONTENT_LENGTH: Final = b"content-length"


def _with_content_length(headers: Any, length: int) -> Any:
    """A copy of ``headers`` with ``Content-Length: length``, as ``copy[...] = ...`` makes it
    (in the first one's place, any others removed), quicker where the copy keeps the list of
    (raw name, lower-case name, value) ``_picked_from`` reads. (``copy()`` would first work
    out the headers' encoding, in a loop over them all; the copy does that when it is asked.)"""
    copy = type(headers)(headers)
    entries = getattr(copy, "_list", None)
    if entries is None:
        copy["Content-Length"] = str(length)
        return copy
    header = (b"Content-Length", _CONTENT_LENGTH, str(length).encode())
    first = -1
    for at, (_, name, _) in enumerate(entries):
        if name == _CONTENT_LENGTH:
            if first >= 0:  # a duplicate, dropped below (rare)
                copy["Content-Length"] = str(length)
                return copy
            first = at
    if first < 0:
        entries.append(header)
    else:
        entries[first] = header
    return copy


def _note_response(observer: CallObserver, response: Any) -> None:
    # the headers a rewrite drops are picked only where the body may be rewritten
    names = _NOTED_HEADERS if observer.strip_usage_chunk else RESPONSE_HEADERS
    headers = _picked_from(response.headers, names)
    if observer.on_response(response.status_code, headers):
        for name in _REWRITTEN_HEADERS:
            if name in headers:  # the dict: asking the Headers would scan them again
                del response.headers[name]


@functools.cache
def stream_classes(http: types.ModuleType) -> tuple[type, type]:
    """The sync and async body-stream wrappers for one HTTP module (httpx or httpx2).

    Each module's client asserts its own ``SyncByteStream``/``AsyncByteStream`` type, so the
    one implementation below is given each module's base classes here.
    """

    class MonitoredByteStream(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, observer: CallObserver) -> None:
            self._inner = inner
            self._observer = observer

        def __iter__(self) -> Iterator[bytes]:
            observer = self._observer
            try:
                for chunk in self._inner:
                    data = observer.on_chunk(chunk)
                    if isinstance(data, bytes):
                        if data:
                            yield data
                    else:
                        yield from filter(None, data)
                tail = observer.on_end()
            except CallerDecodeError as exc:
                raise http.DecodingError(str(exc)) from exc
            except BaseException as exc:
                observer.on_body_error(exc)
                raise
            if tail:
                yield tail

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._observer.on_close()

    class AsyncMonitoredByteStream(http.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, observer: CallObserver) -> None:
            self._inner = inner
            self._observer = observer

        async def __aiter__(self) -> AsyncIterator[bytes]:
            observer = self._observer
            try:
                async for chunk in self._inner:
                    data = observer.on_chunk(chunk)
                    if isinstance(data, bytes):
                        if data:
                            yield data
                    else:
                        for piece in data:
                            if piece:
                                yield piece
                tail = observer.on_end()
            except CallerDecodeError as exc:
                raise http.DecodingError(str(exc)) from exc
            except BaseException as exc:
                observer.on_body_error(exc)
                raise
            if tail:
                yield tail

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._observer.on_close()

    return MonitoredByteStream, AsyncMonitoredByteStream


class _Base:
    def __init__(self, inner: Any, http: types.ModuleType, starter: CallStarter) -> None:
        self._transport = inner
        self._http = http
        self._starter = starter

    @property
    def wrapped(self) -> Any:
        """The transport underneath."""
        return self._transport

    def _start(self, request: Any) -> tuple[CallObserver | None, Any]:
        try:
            return self._starter.start(request, self._http)
        except Exception as exc:
            report_failure("starting a call record", exc)
            return None, request

    def _wrap(self, observer: CallObserver, response: Any, sync: bool) -> None:
        try:
            _note_response(observer, response)
            content = getattr(response, "_content", None)
            if isinstance(content, bytes):  # already read by the inner transport
                response._content = observer.on_read_body(content)
                return
            sync_cls, async_cls = stream_classes(self._http)
            response.stream = (sync_cls if sync else async_cls)(response.stream, observer)
        except Exception as exc:
            report_failure("wrapping a response", exc)


class MonitoredTransport(_Base):
    """Wraps a sync ``BaseTransport`` of httpx or httpx2."""

    def handle_request(self, request: Any) -> Any:
        observer, request = self._start(request)
        if observer is None:
            return self._transport.handle_request(request)
        try:
            response = self._transport.handle_request(request)
        except BaseException as exc:
            observer.on_request_error(exc)
            raise
        self._wrap(observer, response, sync=True)
        return response

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> MonitoredTransport:
        self._transport.__enter__()
        return self

    def __exit__(self, *args: object) -> None:
        self._transport.__exit__(*args)


class AsyncMonitoredTransport(_Base):
    """Wraps an ``AsyncBaseTransport`` of httpx or httpx2."""

    async def handle_async_request(self, request: Any) -> Any:
        observer, request = self._start(request)
        if observer is None:
            return await self._transport.handle_async_request(request)
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException as exc:
            observer.on_request_error(exc)
            raise
        self._wrap(observer, response, sync=False)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncMonitoredTransport:
        await self._transport.__aenter__()
        return self

    async def __aexit__(self, *args: object) -> None:
        await self._transport.__aexit__(*args)
