"""What the simulator and the gateway share: a uvicorn server on a background thread, and a log
filter that keeps a deliberate dropped connection from being logged as a crash."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self

import uvicorn

LOCALHOST: Final = "127.0.0.1"
STARTUP_TIMEOUT_S: Final = 10.0
GRACEFUL_SHUTDOWN_S: Final = 2


def raised_within(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``exc``, an exception group around it or one of its causes is a ``kind``."""
    if exc is None:
        return False
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(raised_within(inner, kind) for inner in exc.exceptions)
    return raised_within(exc.__cause__, kind)


class _QuietAbout(logging.Filter):
    def __init__(self, kind: type[BaseException]) -> None:
        super().__init__()
        self.kind = kind

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and raised_within(record.exc_info[1], self.kind))


def quiet_about(kind: type[BaseException], logger_name: str = "uvicorn.error") -> None:
    """Install (once) a filter hiding the tracebacks of ``kind``, raised on purpose to drop a
    client's connection, from ``logger_name``."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _QuietAbout) and f.kind is kind for f in logger.filters):
        logger.addFilter(_QuietAbout(kind))


class ServerThread:
    """A uvicorn server on a free port of 127.0.0.1, served from a daemon thread.

    A context manager: entering starts the server and waits until it accepts connections; leaving
    stops it and joins the thread. ``make_config(host, port)`` builds the server's config.
    """

    def __init__(self, make_config: Callable[[str, int], uvicorn.Config], name: str) -> None:
        self._make_config = make_config
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"the {self._name} is not running")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/openai/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"{self.base_url}/anthropic"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"the {self._name} is already running")
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it Nagle plus delayed ACKs add ~40 ms to every keep-alive
        # request (uvicorn writes the status line and the body separately).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOCALHOST, 0))
        self._socket = sock
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(self._make_config(LOCALHOST, self._port))
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"longcat-{self._name}", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self._name} did not start")
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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
