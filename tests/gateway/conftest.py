"""Fixtures for the gateway tests: the simulator upstream, a gateway factory, captured records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from capture import CapturedCalls
from gateway_support import GatewayFactory

from monitor.config import Settings, load_settings
from monitor.gateway import RunningGateway
from monitor.simulator import RunningSimulator


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator() as running:
        yield running


@pytest.fixture
def captured() -> CapturedCalls:
    return CapturedCalls()


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
