"""``instrument()``: SDK clients and raw httpx/httpx2 clients → clients that record every call."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from monitor.capture.trace_parent import TraceParentReader, trace_parent_reader
from monitor.capture.transport import AsyncMonitoredTransport, CallStarter, MonitoredTransport
from monitor.config import get_settings
from monitor.records import CallRecord
from monitor.safety import swallow

ClientT = TypeVar("ClientT")
HTTP_MODULES = ("httpx", "httpx2")


class SupportsSubmit(Protocol):
    def submit(self, record: CallRecord) -> None: ...


class NotInstrumentableError(TypeError):
    """``instrument()`` was given something that is not a supported client."""


def _http_module_of(client: Any) -> types.ModuleType | None:
    for name in HTTP_MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        if isinstance(client, (module.Client, module.AsyncClient)):
            return module
    return None


def _default_submit(record: CallRecord) -> None:
    from monitor.recording.recorder import get_recorder

    get_recorder().submit(record)


def _start_default_recorder() -> None:
    """Start the writer now, so a spool an earlier run left behind is replayed right away."""
    from monitor.recording.recorder import get_recorder

    with swallow("starting the call-record writer"):
        get_recorder().start()


def _key_secret() -> str | None:
    with swallow("reading MONITOR_KEY_SECRET"):
        secret = get_settings().key_secret
        return secret.get_secret_value() if secret else None
    return None


def _trace_parent() -> TraceParentReader | None:
    """What reads the app's active span at each call: only while OTLP export is on."""
    with swallow("reading the OTLP export settings"):
        if get_settings().otlp_enabled:
            return trace_parent_reader()
    return None


def _starter(recorder: SupportsSubmit | None, source: str, relayed: bool = False) -> CallStarter:
    return CallStarter(
        _submit_to(recorder),
        _key_secret,
        source=source,
        trace_parent=_trace_parent(),
        relayed=relayed,
    )


def _wrap(transport: Any, http: types.ModuleType, starter: CallStarter, is_async: bool) -> Any:
    if transport is None or isinstance(transport, (MonitoredTransport, AsyncMonitoredTransport)):
        return transport  # already monitored: instrumenting twice records once
    if is_async:
        return AsyncMonitoredTransport(transport, http, starter)
    return MonitoredTransport(transport, http, starter)


def _instrument_http_client(client: Any, http: types.ModuleType, starter: CallStarter) -> None:
    is_async = isinstance(client, http.AsyncClient)
    client._transport = _wrap(client._transport, http, starter, is_async)
    client._mounts = {
        pattern: _wrap(transport, http, starter, is_async)
        for pattern, transport in client._mounts.items()
    }


def instrument_transport(
    transport: Any,
    http: types.ModuleType,
    *,
    recorder: SupportsSubmit | None = None,
    source: str = "wrapper",
    relayed: bool = False,
) -> Any:
    """``transport`` (an ``httpx``/``httpx2`` transport, sync or async, of module ``http``)
    inside the monitored transport, for code that sends requests without a client.

    ``relayed`` (a proxy's transport): the requests come from clients known only by their
    requests. Such a client is taken to decode the content codings its ``Accept-Encoding``
    accepts, where otherwise ``http``'s clients are; and a request's valid W3C ``traceparent``
    header names the parent of the call's exported span, before the active span does.

    >>> transport = instrument_transport(httpx2.AsyncHTTPTransport(), httpx2)  # doctest: +SKIP
    """
    starter = _starter(recorder, source, relayed)
    return _wrap(transport, http, starter, isinstance(transport, http.AsyncBaseTransport))


def _submit_to(recorder: SupportsSubmit | None) -> Callable[[CallRecord], None]:
    if recorder is not None:
        return recorder.submit
    _start_default_recorder()
    return _default_submit


def instrument(
    client: ClientT, *, recorder: SupportsSubmit | None = None, source: str = "wrapper"
) -> ClientT:
    """Record every call ``client`` makes; return the client to use from then on.

    ``client`` may be an ``openai`` or ``anthropic`` SDK client (sync or async, on httpx or
    httpx2) or an ``httpx``/``httpx2`` ``Client``/``AsyncClient``. The same object is returned,
    its transport wrapped; instrumenting it again changes nothing. ``source`` is stored with each
    call (``"gateway"`` for calls the gateway forwards).

    >>> from openai import OpenAI
    >>> import monitor
    >>> client = monitor.instrument(
    ...     OpenAI(base_url="https://api.longcat.chat/openai", api_key="...")
    ... )
    """
    starter = _starter(recorder, source)
    http = _http_module_of(client)
    if http is not None:
        _instrument_http_client(client, http, starter)
        return client
    inner = getattr(client, "_client", None)  # openai and anthropic SDK clients keep it here
    http = _http_module_of(inner)
    if http is None:
        raise NotInstrumentableError(
            "instrument() takes an openai or anthropic SDK client, or an httpx/httpx2 "
            f"Client or AsyncClient; got {type(client).__module__}.{type(client).__qualname__}"
        )
    _instrument_http_client(inner, http, starter)
    return client
