"""Running the gateway: in the foreground (``longcat-monitor gateway``) or on a thread (tests).

>>> with RunningGateway(load_settings(upstream_url=sim.base_url)) as gw:  # doctest: +SKIP
...     openai.OpenAI(base_url=gw.openai_base_url, api_key="sk-…").models.list()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import uvicorn

from monitor.gateway.app import UpstreamCutError, create_gateway_app
from monitor.gateway.protocol import GatewayHttpProtocol
from monitor.serving import GRACEFUL_SHUTDOWN_S, ServerThread, quiet_about

if TYPE_CHECKING:
    import httpx2

    from monitor.config import Settings
    from monitor.gateway.guard import QuotaGuard
    from monitor.instrument import SupportsSubmit

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8787
#: uvicorn's own limit on connections (idle ones too) and requests at once, as a multiple of
#: MONITOR_GATEWAY_MAX_CONCURRENCY: a backstop behind the app's cap on calls, answered in the
#: same shape (:data:`~monitor.gateway.protocol.OVER_CONNECTION_LIMIT`).
CONNECTIONS_PER_CALL: Final = 2


def gateway_config(
    app: Any, settings: Settings, host: str, port: int, log_level: str = "info"
) -> uvicorn.Config:
    quiet_about(UpstreamCutError)
    # uvicorn's httptools protocol, head and body in one write, with header and idle timeouts
    protocol = GatewayHttpProtocol.with_timeouts(
        settings.gateway_header_timeout_s, settings.gateway_idle_timeout_s
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        limit_concurrency=settings.gateway_max_concurrency * CONNECTIONS_PER_CALL,
        ws="none",
        lifespan="on",
        log_level=log_level,
        access_log=False,  # every call is recorded in api_calls; a log line adds latency
        proxy_headers=False,  # the client's address is not used: no X-Forwarded-For middleware
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
        date_header=False,
    )


def serve_forever(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the gateway until interrupted (``longcat-monitor gateway``)."""
    uvicorn.Server(gateway_config(create_gateway_app(settings), settings, host, port)).run()


class RunningGateway(ServerThread):
    """The gateway on a free port of 127.0.0.1, served from a background thread.

    Entering starts the server and waits until it accepts connections; leaving stops it. Keyword
    arguments go to :func:`~monitor.gateway.app.create_gateway_app`.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        upstream_transport: httpx2.AsyncBaseTransport | None = None,
        recorder: SupportsSubmit | None = None,
        guard: QuotaGuard | None = None,
    ) -> None:
        app = create_gateway_app(
            settings, upstream_transport=upstream_transport, recorder=recorder, guard=guard
        )
        super().__init__(
            lambda host, port: gateway_config(app, settings, host, port, "warning"), "gateway"
        )
