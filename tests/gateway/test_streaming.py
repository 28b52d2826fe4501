"""Streams through the gateway arrive as they are generated, and a client that leaves is noticed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx2
import pytest
import uvicorn
from capture import CapturedCalls
from gateway_support import KEY, MESSAGES, GatewayFactory
from waiting import eventually

from monitor.config import load_settings
from monitor.gateway import create_gateway_app
from monitor.gateway.upstream import UpstreamTransport
from monitor.serving import ServerThread
from monitor.simulator import RunningSimulator, SimulatorOptions

FIRST_TOKEN_DELAY_MS = 300
GATEWAY_ALLOWANCE_MS = 200


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[RunningSimulator]:
    """A simulator whose streams last a while: 30 ms between content events."""
    with RunningSimulator(SimulatorOptions(chunk_interval_ms=30, words_per_chunk=1)) as running:
        yield running


def first_and_last_byte(
    client: httpx2.Client, url: str, headers: dict[str, str]
) -> tuple[float, float]:
    payload = {"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": True}
    start = time.perf_counter()
    first = None
    with client.stream(
        "POST", url, json=payload, headers={"authorization": f"Bearer {KEY}", **headers}
    ) as response:
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - start
    assert first is not None
    return first * 1000, (time.perf_counter() - start) * 1000


def test_time_to_first_byte_stays_the_upstreams(
    slow_sim: RunningSimulator, gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    gateway = gateway_for(recorder=captured, upstream_url=slow_sim.base_url)
    headers = {
        "x-simulate-fault": "slow_first_token",
        "x-simulate-delay-ms": str(FIRST_TOKEN_DELAY_MS),
    }
    with httpx2.Client() as client:
        direct_first, direct_end = first_and_last_byte(
            client, slow_sim.base_url + "/openai/v1/chat/completions", headers
        )
        first, end = first_and_last_byte(
            client, gateway.base_url + "/openai/v1/chat/completions", headers
        )
    assert FIRST_TOKEN_DELAY_MS <= first < FIRST_TOKEN_DELAY_MS + GATEWAY_ALLOWANCE_MS
    assert end - first > 200  # the first bytes came long before the stream ended: no buffering
    assert direct_end - direct_first > 200
    record = captured.only()
    assert record.ttft_ms is not None and record.ttft_ms >= FIRST_TOKEN_DELAY_MS


@pytest.mark.parametrize("server", ["gateway", "plain uvicorn"])
def test_client_leaving_mid_stream_is_recorded_and_closes_the_upstream(
    slow_sim: RunningSimulator,
    gateway_for: GatewayFactory,
    captured: CapturedCalls,
    server: str,
) -> None:
    upstream = UpstreamTransport()
    with ExitStack() as stack:
        if server == "gateway":  # the gateway's own protocol tells the app the client is gone
            gateway: ServerThread = gateway_for(
                recorder=captured, upstream_transport=upstream, upstream_url=slow_sim.base_url
            )
        else:  # any other ASGI server: the app learns it from receive()
            app = create_gateway_app(
                load_settings(upstream_url=slow_sim.base_url),
                recorder=captured,
                upstream_transport=upstream,
            )
            plain = ServerThread(
                lambda host, port: uvicorn.Config(
                    app, host=host, port=port, http="httptools", log_level="warning"
                ),
                "gateway",
            )
            gateway = stack.enter_context(plain)
        leave_mid_stream(gateway.openai_base_url)
        eventually(lambda: captured.records, what="the gateway's record")
    record = captured.only()
    assert (record.error_type, record.error_code) == ("stream_interrupted", "client_closed")
    assert record.latency_ms is not None and record.latency_ms < 1000  # not the whole stream
    assert upstream.connections == []  # closed, not kept for reuse half-read


def leave_mid_stream(base_url: str) -> None:
    payload = {"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": True}
    with (
        httpx2.Client() as client,
        client.stream(
            "POST",
            base_url + "/chat/completions",
            json=payload,
            headers={"authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        assert response.status_code == 200
        next(response.iter_raw())
        # leaving the block closes the response mid-body: the connection is dropped
