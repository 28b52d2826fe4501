"""Calls through the gateway: same bytes and same records as a wrapped client calling directly."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
import zstandard
from capture import CapturedCalls
from gateway_support import ANTHROPIC, KEY, MESSAGES, OPENAI, GatewayFactory, call

import monitor
from monitor.gateway import RunningGateway
from monitor.gateway.upstream import UpstreamTransport
from monitor.records import CallRecord
from monitor.simulator import RunningSimulator

CASES = [
    ("openai body", OPENAI, {}, {}),
    ("openai stream", OPENAI, {"stream": True}, {}),
    (
        "openai stream, usage asked",
        OPENAI,
        {"stream": True, "stream_options": {"include_usage": True}},
        {},
    ),
    ("openai stream, gzip", OPENAI, {"stream": True}, {"x-simulate-compress": "gzip"}),
    ("openai 401", OPENAI, {}, {"x-simulate-fault": "auth"}),
    ("openai 429", OPENAI, {"stream": True}, {"x-simulate-fault": "rate_limit"}),
    ("openai context length", OPENAI, {}, {"x-simulate-fault": "context_length"}),
    ("openai 500", OPENAI, {}, {"x-simulate-fault": "server_error"}),
    ("openai cut stream", OPENAI, {"stream": True}, {"x-simulate-fault": "cut_stream"}),
    ("openai in-band error", OPENAI, {"stream": True}, {"x-simulate-fault": "stream_error"}),
    ("anthropic body", ANTHROPIC, {}, {}),
    ("anthropic body, br", ANTHROPIC, {}, {"x-simulate-compress": "br"}),
    ("anthropic stream", ANTHROPIC, {"stream": True}, {}),
    ("anthropic stream, deflate", ANTHROPIC, {"stream": True}, {"x-simulate-compress": "deflate"}),
    ("anthropic 529", ANTHROPIC, {}, {"x-simulate-fault": "overloaded"}),
    ("anthropic context length", ANTHROPIC, {}, {"x-simulate-fault": "context_length"}),
    ("anthropic cut stream", ANTHROPIC, {"stream": True}, {"x-simulate-fault": "cut_stream"}),
    ("anthropic in-band error", ANTHROPIC, {"stream": True}, {"x-simulate-fault": "stream_error"}),
]
COMPARED = (
    "api",
    "endpoint",
    "method",
    "key_id",
    "key_hint",
    "model",
    "stream",
    "status_code",
    "error_type",
    "error_code",
    "retry_after_s",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "usage_source",
)


def facts(record: CallRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in COMPARED}


@pytest.mark.parametrize(
    ("path", "body", "headers"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_same_bytes_and_same_record_as_the_wrapper(
    sim: RunningSimulator,
    gateway: RunningGateway,
    captured: CapturedCalls,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    direct_calls = CapturedCalls()
    with monitor.instrument(httpx2.Client(), recorder=direct_calls) as direct:
        expected = call(direct, sim.base_url + path, body, headers)
    with httpx2.Client() as plain:
        got = call(plain, gateway.base_url + path, body, headers)
    assert got == expected
    wrapped, through = direct_calls.only(), captured.only()
    assert facts(through) == facts(wrapped)
    assert (wrapped.source, through.source) == ("wrapper", "gateway")
    assert through.latency_ms is not None and through.latency_ms > 0
    if body.get("stream") and through.error_type is None:
        assert through.ttft_ms is not None


@pytest.mark.parametrize(
    ("accepted", "relayed_encoded"),
    [("gzip, deflate, br, zstd", False), ("gzip, deflate, br", True)],
    ids=["zstd accepted", "zstd not accepted"],
)
def test_a_body_in_a_coding_the_client_did_not_accept_is_relayed_as_it_came(
    gateway: RunningGateway, captured: CapturedCalls, accepted: str, relayed_encoded: bool
) -> None:
    # The gateway's client is known by its request only: a body in a coding it accepts may be
    # relayed decoded, the usage chunk the monitor asked for taken out; any other is relayed as
    # the upstream sent it, that chunk inside, as the client would have had it without the
    # gateway. The record has the reported usage either way.
    payload = {"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": True}
    headers = {
        "authorization": f"Bearer {KEY}",
        "accept-encoding": accepted,
        "x-simulate-compress": "zstd",
    }
    with (
        httpx2.Client() as client,
        client.stream("POST", gateway.base_url + OPENAI, json=payload, headers=headers) as response,
    ):
        raw = b"".join(response.iter_raw())
        encoding = response.headers.get("content-encoding")
    assert response.status_code == 200
    if relayed_encoded:
        assert encoding == "zstd"
        events = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        assert b'"choices":[],"usage":{' in events
    else:
        assert encoding is None
        assert raw.startswith(b"data: ") and b'"usage"' not in raw
    record = captured.only()
    assert record.error_type is None and record.usage_source == "reported"
    assert record.input_tokens and record.output_tokens


def test_headers_pass_both_ways_except_hop_by_hop(
    gateway: RunningGateway, captured: CapturedCalls
) -> None:
    with httpx2.Client() as client:
        response = client.post(
            gateway.openai_base_url + "/chat/completions",
            json={"model": "LongCat-Flash-Chat", "messages": MESSAGES},
            headers={
                "authorization": f"Bearer {KEY}",
                "x-stainless-retry-count": "2",
                "connection": "keep-alive, x-private-hop",
                "x-private-hop": "must not be forwarded",
            },
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")
    assert int(response.headers["content-length"]) == len(response.content)
    assert "transfer-encoding" not in response.headers
    record = captured.only()
    assert record.attempt == 2  # the client's own headers reached the transport
    assert KEY not in repr(record)


def test_query_strings_and_gets_are_forwarded(gateway: RunningGateway) -> None:
    with httpx2.Client() as client:
        response = client.get(
            gateway.openai_base_url + "/models?limit=5", headers={"authorization": f"Bearer {KEY}"}
        )
    assert response.status_code == 200
    assert {model["id"] for model in response.json()["data"]} >= {"LongCat-Flash-Chat"}


def test_other_paths_are_not_forwarded(gateway: RunningGateway, captured: CapturedCalls) -> None:
    with httpx2.Client() as client:
        response = client.get(gateway.base_url + "/v1/chat/completions")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert captured.records == []


def test_calls_reuse_one_upstream_connection(
    gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    upstream = UpstreamTransport()
    gateway = gateway_for(recorder=captured, upstream_transport=upstream)
    with httpx2.Client() as client:
        for body in ({}, {"stream": True}, {}):
            assert call(client, gateway.base_url + OPENAI, body, {})[0] == 200
    assert len(upstream.connections) == 1  # kept alive between calls, not one per call
    assert len(captured.records) == 3
