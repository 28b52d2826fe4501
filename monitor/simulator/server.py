"""Running the simulator: in the foreground (the CLI) or on a background thread (tests).

>>> with RunningSimulator() as sim:  # doctest: +SKIP
...     client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test")
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from monitor.simulator.app import SimulatorOptions, create_app

STARTUP_TIMEOUT_S = 10.0
GRACEFUL_SHUTDOWN_S = 2
LOCALHOST = "127.0.0.1"


def _config(
    options: SimulatorOptions | None, host: str, port: int, *, quiet: bool
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(options),
        host=host,
        port=port,
        http="h11",
        ws="none",
        lifespan="off",
        log_level="warning" if quiet else "info",
        access_log=not quiet,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def serve_forever(
    host: str = LOCALHOST, port: int = 8900, options: SimulatorOptions | None = None
) -> None:
    """Serve the simulator until interrupted (``longcat-monitor simulate``)."""
    uvicorn.Server(_config(options, host, port, quiet=False)).run()


class RunningSimulator:
    """The simulator on a free port of 127.0.0.1, served from a background thread.

    A context manager: entering starts the server and waits until it accepts connections; leaving
    stops it and joins the thread.

    >>> with RunningSimulator() as sim:  # doctest: +SKIP
    ...     anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="k").messages.create(...)
    """

    def __init__(self, options: SimulatorOptions | None = None) -> None:
        self._options = options
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running")
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
            raise RuntimeError("the simulator is already running")
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it Nagle plus delayed ACKs add ~40 ms to every keep-alive
        # request (uvicorn writes the status line and the body separately).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOCALHOST, 0))
        self._socket = sock
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(_config(self._options, LOCALHOST, self._port, quiet=True))
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="longcat-simulator", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator did not start")
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

    def __enter__(self) -> RunningSimulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
