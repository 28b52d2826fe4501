"""The simulator behind TLS on 127.0.0.1, with a throwaway self-signed certificate (openssl CLI)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.serving import GRACEFUL_SHUTDOWN_S, LOCALHOST, ServerThread
from monitor.simulator.app import create_app


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (valid two days) and its key, written to folder."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    options = (
        "req -x509 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
        f" -subj /CN={LOCALHOST} -addext subjectAltName=IP:{LOCALHOST}"
    )
    command = ["openssl", *options.split(), "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


class TlsSimulator(ServerThread):
    """The simulator served over TLS; ``connections`` counts the TCP connections it accepted,
    ``open_connections`` those not yet closed."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.connections = 0
        self.open_connections = 0
        simulator = self

        class CountingH11(H11Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                simulator.connections += 1
                simulator.open_connections += 1
                super().connection_made(transport)  # type: ignore[arg-type]

            def connection_lost(self, exc: Exception | None) -> None:
                simulator.open_connections -= 1
                super().connection_lost(exc)

        def config(host: str, port: int) -> uvicorn.Config:
            return uvicorn.Config(
                create_app(),
                host=host,
                port=port,
                http=CountingH11,
                ws="none",
                lifespan="off",
                log_level="critical",  # refused handshakes are the point of some tests
                access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                ssl_certfile=str(cert),
                ssl_keyfile=str(key),
            )

        super().__init__(config, "TLS simulator")

    @property
    def base_url(self) -> str:
        return f"https://{LOCALHOST}:{self.port}"
