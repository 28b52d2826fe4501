"""Running the simulator: in the foreground (the CLI) or on a background thread (tests).

>>> with RunningSimulator() as sim:  # doctest: +SKIP
...     client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test")
"""

from __future__ import annotations

import uvicorn

from monitor.serving import GRACEFUL_SHUTDOWN_S, LOCALHOST, ServerThread
from monitor.simulator.app import SimulatorOptions, create_app


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


class RunningSimulator(ServerThread):
    """The simulator on a free port of 127.0.0.1, served from a background thread.

    A context manager: entering starts the server and waits until it accepts connections; leaving
    stops it and joins the thread.

    >>> with RunningSimulator() as sim:  # doctest: +SKIP
    ...     anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="k").messages.create(...)
    """

    def __init__(self, options: SimulatorOptions | None = None) -> None:
        super().__init__(lambda host, port: _config(options, host, port, quiet=True), "simulator")
