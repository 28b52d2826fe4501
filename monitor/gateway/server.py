"""Running the gateway: in the foreground (``longcat-monitor gateway``) or on a thread (tests).

>>> with RunningGateway(load_settings(upstream_url=sim.base_url)) as gw:  # doctest: +SKIP
...     openai.OpenAI(base_url=gw.openai_base_url, api_key="sk-…").models.list()
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import uvicorn

from monitor.gateway.app import UpstreamCutError, create_gateway_app

if TYPE_CHECKING:
    import httpx2

    from monitor.config import Settings
    from monitor.gateway.guard import QuotaGuard
    from monitor.instrument import SupportsSubmit

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8787
STARTUP_TIMEOUT_S: Final = 10.0
GRACEFUL_SHUTDOWN_S: Final = 2


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the gateway reachable from this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _QuietUpstreamCuts(logging.Filter):
    """An upstream that breaks off a stream is relayed by dropping the client's connection too;
    that is the gateway working, not a crash, so uvicorn's traceback for it is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_upstream_cut(record.exc_info[1]))


def _is_upstream_cut(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, UpstreamCutError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_upstream_cut(inner) for inner in exc.exceptions)
    return _is_upstream_cut(exc.__cause__)


_QUIET = _QuietUpstreamCuts()


def quiet_upstream_cuts() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)


def gateway_config(app: Any, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    quiet_upstream_cuts()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="none",
        lifespan="on",
        log_level=log_level,
        access_log=False,  # every call is recorded in api_calls; a log line adds latency
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
        date_header=False,
    )


def serve_forever(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the gateway until interrupted (``longcat-monitor gateway``)."""
    uvicorn.Server(gateway_config(create_gateway_app(settings), host, port)).run()


class RunningGateway:
    """The gateway on a free port of 127.0.0.1, served from a background thread.

    Entering starts the server and waits until it accepts connections; leaving stops it. Keyword
    arguments go to :func:`~monitor.gateway.app.create_gateway_app`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        upstream_client: httpx2.AsyncClient | None = None,
        recorder: SupportsSubmit | None = None,
        guard: QuotaGuard | None = None,
    ) -> None:
        self._app = create_gateway_app(
            settings, upstream_client=upstream_client, recorder=recorder, guard=guard
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the gateway is not running")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{DEFAULT_HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/openai/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"{self.base_url}/anthropic"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the gateway is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((DEFAULT_HOST, 0))
        self._socket = sock
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(gateway_config(self._app, DEFAULT_HOST, self._port, "warning"))
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="longcat-gateway", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the gateway did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop the server and join its thread; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=GRACEFUL_SHUTDOWN_S + STARTUP_TIMEOUT_S)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join()
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None
        self._port = None

    def __enter__(self) -> RunningGateway:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
