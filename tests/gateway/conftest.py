"""Fixtures for the gateway tests: a TLS simulator upstream, and gateways to the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from capture import CapturedCalls
from gateway_support import GatewayFactory
from tls_support import TlsSimulator, make_certificate

from monitor.config import Settings, load_settings
from monitor.gateway import RunningGateway
from monitor.simulator import RunningSimulator


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and its key."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_sim(certificate: tuple[Path, Path]) -> Iterator[TlsSimulator]:
    """The simulator over TLS with that certificate (which no client trusts unless told to)."""
    with TlsSimulator(*certificate) as running:
        yield running


@pytest.fixture
def gateway_for(sim: RunningSimulator) -> Iterator[GatewayFactory]:
    """Start a gateway (to the simulator unless ``upstream_url`` says otherwise); stopped after."""
    with ExitStack() as stack:

        def start(recorder: Any = None, upstream_transport: Any = None, **overrides: Any) -> Any:
            overrides.setdefault("upstream_url", sim.base_url)
            settings: Settings = load_settings(**overrides)
            gateway = RunningGateway(
                settings, recorder=recorder, upstream_transport=upstream_transport
            )
            return stack.enter_context(gateway)

        yield start


@pytest.fixture
def gateway(gateway_for: GatewayFactory, captured: CapturedCalls) -> RunningGateway:
    return gateway_for(recorder=captured)
