"""The simulator over plain HTTP: lifecycle, auth, error shapes, delays, encodings."""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zstandard

from monitor.simulator import RunningSimulator, SimulatorOptions

CHAT = "/openai/v1/chat/completions"
MESSAGES = "/anthropic/v1/messages"
OPENAI_BODY: dict[str, Any] = {
    "model": "LongCat-Flash-Chat",
    "messages": [{"role": "user", "content": "hello"}],
}
ANTHROPIC_BODY: dict[str, Any] = {**OPENAI_BODY, "max_tokens": 64}
KEY = {"authorization": "Bearer sk-test"}


@pytest.fixture(scope="module")
def http(sim: RunningSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=5) as client:
        yield client


def simulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "longcat-simulator"]


def test_lifecycle_leaves_nothing_behind() -> None:
    before = len(simulator_threads())
    with RunningSimulator() as sim:
        assert sim.openai_base_url == f"http://127.0.0.1:{sim.port}/openai/v1"
        assert sim.anthropic_base_url == f"http://127.0.0.1:{sim.port}/anthropic"
        assert len(simulator_threads()) == before + 1
        port = sim.port
        assert httpx.post(sim.base_url + CHAT, json=OPENAI_BODY, headers=KEY).status_code == 200
    assert len(simulator_threads()) == before
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    sim.stop()  # a second stop is harmless
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_stop_is_prompt_while_a_request_hangs() -> None:
    sim = RunningSimulator().__enter__()
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                sim.base_url + CHAT,
                json=OPENAI_BODY,
                headers={**KEY, "x-simulate-fault": "hang"},
                timeout=0.2,
            )
    finally:
        started = time.monotonic()
        sim.stop()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(("path", "body"), [(CHAT, OPENAI_BODY), (MESSAGES, ANTHROPIC_BODY)])
def test_missing_key_is_401_in_the_api_shape(
    http: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 401
    payload = response.json()
    if path == CHAT:
        assert payload["error"]["type"] == "authentication_error"
        assert response.headers["x-request-id"].startswith("req_")
    else:
        assert payload["type"] == "error"
        assert payload["error"]["type"] == "authentication_error"
        assert response.headers["request-id"].startswith("req_")


def test_openai_endpoint_ignores_x_api_key(http: httpx.Client) -> None:
    assert http.post(CHAT, json=OPENAI_BODY, headers={"x-api-key": "k"}).status_code == 401
    assert http.post(MESSAGES, json=ANTHROPIC_BODY, headers={"x-api-key": "k"}).status_code == 200


def test_unknown_route_and_method_have_json_errors(http: httpx.Client) -> None:
    missing = http.post("/openai/v1/embeddings", json={}, headers=KEY)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong = http.get(MESSAGES, headers=KEY)
    assert wrong.status_code == 405
    assert wrong.json()["type"] == "error"


@pytest.mark.parametrize(
    ("headers", "body", "fragment"),
    [
        ({"x-simulate-fault": "explode"}, OPENAI_BODY, "unknown fault"),
        ({"x-simulate-delay-ms": "soon"}, OPENAI_BODY, "whole number"),
        ({"x-simulate-compress": "lzma"}, OPENAI_BODY, "unknown encoding"),
        ({}, {"model": "LongCat-Flash-Chat"}, "messages"),
        ({}, {"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({}, {**OPENAI_BODY, "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_requests_are_400(
    http: httpx.Client, headers: dict[str, str], body: dict[str, Any], fragment: str
) -> None:
    response = http.post(CHAT, json=body, headers={**KEY, **headers})
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


def test_invalid_json_and_missing_max_tokens(http: httpx.Client) -> None:
    response = http.post(CHAT, content=b"{not json", headers=KEY)
    assert response.status_code == 400
    response = http.post(MESSAGES, json=OPENAI_BODY, headers=KEY)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_delay_before_headers_for_non_stream(http: httpx.Client) -> None:
    started = time.monotonic()
    response = http.post(CHAT, json=OPENAI_BODY, headers={**KEY, "x-simulate-delay-ms": "150"})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.15


def test_slow_first_token_delays_the_first_event(http: httpx.Client) -> None:
    body = {**OPENAI_BODY, "stream": True}
    headers = {**KEY, "x-simulate-fault": "slow_first_token", "x-simulate-delay-ms": "200"}
    started = time.monotonic()
    with http.stream("POST", CHAT, json=body, headers=headers) as response:
        headers_at = time.monotonic() - started
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
    assert headers_at < 0.15
    assert first_at >= 0.2
    assert first.startswith(b"data: ")
    assert rest.endswith(b"data: [DONE]\n\n")


def test_zstd_decodes_with_httpx(http: httpx.Client) -> None:
    headers = {**KEY, "x-simulate-compress": "zstd"}
    response = http.post(CHAT, json=OPENAI_BODY, headers=headers)
    assert response.headers["content-encoding"] == "zstd"
    assert response.json()["usage"]["completion_tokens"] > 0

    body = {**OPENAI_BODY, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", CHAT, json=body, headers=headers) as stream:
        lines = [line for line in stream.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2].removeprefix("data: "))["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
def test_compressed_stream_is_flushed_per_event(http: httpx.Client, encoding: str) -> None:
    body = {**ANTHROPIC_BODY, "stream": True}
    headers = {**KEY, "x-simulate-compress": encoding}
    if encoding == "zstd":
        decoder: Any = zstandard.ZstdDecompressor().decompressobj()
    else:
        decoder = zlib.decompressobj(31 if encoding == "gzip" else 15)
    with http.stream("POST", MESSAGES, json=body, headers=headers) as response:
        first = decoder.decompress(next(response.iter_raw()))
    # The first compressed piece decodes on its own into whole events.
    assert first.startswith(b"event: message_start\ndata: {")
    assert first.endswith(b"\n\n")


def test_context_window_is_enforced() -> None:
    options = SimulatorOptions(max_context_tokens=50)
    with RunningSimulator(options) as sim:
        body = {**OPENAI_BODY, "messages": [{"role": "user", "content": "word " * 200}]}
        response = httpx.post(sim.base_url + CHAT, json=body, headers=KEY)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "maximum context length is 50 tokens" in error["message"]


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="words_per_chunk"):
        SimulatorOptions(words_per_chunk=0)
    with pytest.raises(ValueError, match="latency_ms"):
        SimulatorOptions(latency_ms=-1)
