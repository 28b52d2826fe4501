"""Fixtures for the gateway tests: the simulator upstream, a gateway factory, captured records."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Settings, load_settings
from monitor.gateway import RunningGateway
from monitor.simulator import RunningSimulator

sys.path.insert(0, str(Path(__file__).parent.parent / "wrapper"))
from capture import CapturedCalls

KEY = "sk-gateway-test-0a1b2c3d4e5f-WXYZ"
MESSAGES = [{"role": "user", "content": "How much of my quota is left today?"}]
_IDS = re.compile(rb'(chatcmpl-|msg_|req_)[0-9a-f]+|"created":\s*\d+')


def masked(body: bytes) -> bytes:
    """``body`` with the ids and timestamps the simulator makes afresh for every call masked."""
    return _IDS.sub(b"<id>", body)


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSimulator]:
    with RunningSimulator() as running:
        yield running


@pytest.fixture
def captured() -> CapturedCalls:
    return CapturedCalls()


GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def gateway_for(sim: RunningSimulator) -> Iterator[GatewayFactory]:
    """Start a gateway (to the simulator unless ``upstream_url`` says otherwise); stopped after."""
    with ExitStack() as stack:

        def start(recorder: Any = None, upstream_client: Any = None, **overrides: Any) -> Any:
            overrides.setdefault("upstream_url", sim.base_url)
            settings: Settings = load_settings(**overrides)
            gateway = RunningGateway(settings, recorder=recorder, upstream_client=upstream_client)
            return stack.enter_context(gateway)

        yield start


@pytest.fixture
def gateway(gateway_for: GatewayFactory, captured: CapturedCalls) -> RunningGateway:
    return gateway_for(recorder=captured)
