"""The simulator's pure parts: header parsing, token accounting, event building, encodings."""

from __future__ import annotations

import json
import zlib
from typing import Any

import brotli
import pytest
import zstandard

from monitor.simulator.faults import (
    Compression,
    Fault,
    Simulation,
    SimulationHeaderError,
    parse_simulation,
)
from monitor.simulator.responses import (
    Api,
    RequestBodyError,
    anthropic_stream,
    estimate_input_tokens,
    fault_reply,
    make_encoder,
    openai_stream,
    plan_completion,
    split_pieces,
)

BODY: dict[str, Any] = {
    "model": "LongCat-Flash-Chat",
    "messages": [{"role": "user", "content": "How many tokens is this?"}],
}


def test_no_headers_means_no_simulation() -> None:
    assert parse_simulation({"content-type": "application/json"}) == Simulation()


def test_header_names_and_fault_values_are_case_insensitive() -> None:
    sim = parse_simulation({"X-Simulate-Fault": "Rate_Limit", "X-Simulate-Compress": "GZIP"})
    assert sim.fault is Fault.RATE_LIMIT
    assert sim.compress is Compression.GZIP


@pytest.mark.parametrize(
    ("attempt", "applies"), [(None, True), ("0", True), ("1", True), ("2", False), ("5", False)]
)
def test_fault_times_counts_sdk_attempts(attempt: str | None, applies: bool) -> None:
    headers = {"x-simulate-fault": "server_error", "x-simulate-fault-times": "2"}
    if attempt is not None:
        headers["x-stainless-retry-count"] = attempt
    assert (parse_simulation(headers).fault is Fault.SERVER_ERROR) is applies


def test_slow_first_token_defaults_to_1500_ms() -> None:
    assert parse_simulation({"x-simulate-fault": "slow_first_token"}).delay_ms == 1500
    slow = parse_simulation({"x-simulate-fault": "slow_first_token", "x-simulate-delay-ms": "40"})
    assert slow.delay_ms == 40


@pytest.mark.parametrize(
    "headers",
    [
        {"x-simulate-fault": "boom"},
        {"x-simulate-fault-times": "-1"},
        {"x-simulate-delay-ms": "1.5"},
        {"x-simulate-delay-ms": "99999999"},
        {"x-simulate-compress": "lz4"},
    ],
)
def test_bad_headers_are_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(SimulationHeaderError):
        parse_simulation(headers)


def test_same_request_same_answer_and_input_estimate() -> None:
    first = plan_completion(Api.OPENAI, BODY)
    assert first == plan_completion(Api.OPENAI, BODY)
    assert first != plan_completion(Api.OPENAI, {**BODY, "temperature": 0.5})
    # 24 characters -> 6 tokens, plus 4 for the message and 3 for the request.
    assert first.prompt_tokens == estimate_input_tokens(Api.OPENAI, BODY) == 13
    assert 16 <= first.completion_tokens <= 64


def test_input_estimate_reads_content_parts_and_system() -> None:
    parts = {"role": "user", "content": [{"type": "text", "text": "x" * 40}]}
    assert estimate_input_tokens(Api.OPENAI, {"messages": [parts]}) == 3 + 4 + 10
    body = {"system": [{"type": "text", "text": "y" * 8}], "messages": [parts]}
    assert estimate_input_tokens(Api.ANTHROPIC, body) == 3 + 8 + 12


def test_cached_tokens_never_exceed_the_prompt() -> None:
    plan = plan_completion(Api.ANTHROPIC, {**BODY, "max_tokens": 10}, cached_tokens=500)
    assert plan.prompt_tokens == 500
    assert plan.uncached_prompt_tokens == 0


@pytest.mark.parametrize(
    ("api", "body"),
    [
        (Api.OPENAI, {"model": "m", "messages": []}),
        (Api.OPENAI, {**BODY, "stream": "yes"}),
        (Api.OPENAI, {**BODY, "max_tokens": True}),
        (Api.ANTHROPIC, BODY),
    ],
)
def test_invalid_bodies(api: Api, body: dict[str, Any]) -> None:
    with pytest.raises(RequestBodyError):
        plan_completion(api, body)


def test_split_pieces_concatenate_to_the_text() -> None:
    words = ("one", "two", "three", "four", "five")
    assert split_pieces(words, 2) == ["one two", " three four", " five"]
    assert "".join(split_pieces(words, 3)) == " ".join(words)
    assert split_pieces((), 3) == []


def _data(event: bytes) -> Any:
    payload = event.decode().split("data: ", 1)[1].strip()
    return None if payload == "[DONE]" else json.loads(payload)


def test_openai_stream_usage_only_when_asked() -> None:
    plain = plan_completion(Api.OPENAI, {**BODY, "stream": True})
    events = openai_stream(plain, completion_id="c", created=0).events()
    assert events[-1].data == b"data: [DONE]\n\n"
    assert all("usage" not in _data(e.data) for e in events[:-1])

    asked = plan_completion(
        Api.OPENAI, {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    )
    chunks = [_data(e.data) for e in openai_stream(asked, completion_id="c", created=0).events()]
    assert chunks[-1] is None
    usage_chunk = chunks[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == asked.completion_tokens
    assert all(chunk["usage"] is None for chunk in chunks[:-2])
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-3]["choices"][0]["delta"]["content"]


def test_anthropic_stream_exact_framing() -> None:
    plan = plan_completion(Api.ANTHROPIC, {**BODY, "max_tokens": 100, "stream": True})
    events = anthropic_stream(plan, message_id="msg_1").events()
    names = [e.data.split(b"\n", 1)[0] for e in events]
    assert names[:3] == [b"event: message_start", b"event: content_block_start", b"event: ping"]
    assert names[-3:] == [
        b"event: content_block_stop",
        b"event: message_delta",
        b"event: message_stop",
    ]
    assert all(e.data.endswith(b"}\n\n") and e.data.count(b"\ndata: ") == 1 for e in events)
    delta = _data(events[-2].data)
    assert delta["usage"] == {"output_tokens": plan.completion_tokens}
    deltas = [e for e in events if e.data.startswith(b"event: content_block_delta")]
    text = "".join(_data(e.data)["delta"]["text"] for e in deltas)
    assert text == plan.text


def test_fault_replies_per_api() -> None:
    openai_429 = fault_reply(Api.OPENAI, Fault.RATE_LIMIT)
    assert openai_429.status == 429
    assert openai_429.headers == {"retry-after": "60"}
    assert openai_429.body["error"]["code"] == "rate_limit_exceeded"
    assert fault_reply(Api.OPENAI, Fault.OVERLOADED).status == 503
    overloaded = fault_reply(Api.ANTHROPIC, Fault.OVERLOADED)
    assert overloaded.status == 529
    assert overloaded.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def _decompressor(compression: Compression) -> Any:
    if compression is Compression.GZIP:
        return zlib.decompressobj(31)
    if compression is Compression.DEFLATE:
        return zlib.decompressobj(15)
    if compression is Compression.BR:
        return brotli.Decompressor()
    return zstandard.ZstdDecompressor().decompressobj()


@pytest.mark.parametrize("compression", list(Compression))
def test_encoders_flush_each_piece(compression: Compression) -> None:
    encoder = make_encoder(compression)
    decoder = _decompressor(compression)
    decode = decoder.process if compression is Compression.BR else decoder.decompress
    pieces = [b"event: a\ndata: {}\n\n", b"event: b\ndata: {}\n\n"]
    for piece in pieces:
        assert decode(encoder.encode(piece)) == piece
    assert decode(encoder.finish()) == b""
