"""What the caller reads is the same with and without the wrapper: bytes, status, exceptions.

The simulator runs in deterministic mode (fixed ids, timestamps and text), so two identical
requests get identical answers and any difference would be the wrapper's doing.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from capture import CapturedCalls

import monitor
from monitor.simulator import RunningSimulator, SimulatorOptions

KEY = "sk-caller-view-1234"
MESSAGES = [{"role": "user", "content": "Write a haiku about quotas."}]
OPENAI = "/openai/v1/chat/completions"
ANTHROPIC = "/anthropic/v1/messages"
RESPONSES = "/openai/v1/responses"

CASES: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
    ("openai stream, usage not asked", OPENAI, {"stream": True}, {}),
    (
        "openai stream, usage asked",
        OPENAI,
        {"stream": True, "stream_options": {"include_usage": True}},
        {},
    ),
    ("openai stream, gzip", OPENAI, {"stream": True}, {"x-simulate-compress": "gzip"}),
    ("openai stream, br", OPENAI, {"stream": True}, {"x-simulate-compress": "br"}),
    ("openai stream, zstd", OPENAI, {"stream": True}, {"x-simulate-compress": "zstd"}),
    ("openai body", OPENAI, {}, {}),
    ("openai 429", OPENAI, {"stream": True}, {"x-simulate-fault": "rate_limit"}),
    ("openai cut stream", OPENAI, {"stream": True}, {"x-simulate-fault": "cut_stream"}),
    ("openai in-band error", OPENAI, {"stream": True}, {"x-simulate-fault": "stream_error"}),
    ("responses stream", RESPONSES, {"stream": True}, {}),
    ("responses stream, gzip", RESPONSES, {"stream": True}, {"x-simulate-compress": "gzip"}),
    ("responses body", RESPONSES, {}, {}),
    ("responses 402", RESPONSES, {"stream": True}, {"x-simulate-fault": "quota_exhausted"}),
    ("responses cut stream", RESPONSES, {"stream": True}, {"x-simulate-fault": "cut_stream"}),
    ("responses error event", RESPONSES, {"stream": True}, {"x-simulate-fault": "stream_error"}),
    (
        "responses failed",
        RESPONSES,
        {"stream": True},
        {"x-simulate-fault": "response_failed"},
    ),
    ("anthropic stream", ANTHROPIC, {"stream": True}, {}),
    ("anthropic stream, deflate", ANTHROPIC, {"stream": True}, {"x-simulate-compress": "deflate"}),
    ("anthropic body", ANTHROPIC, {}, {}),
    ("anthropic 529", ANTHROPIC, {}, {"x-simulate-fault": "overloaded"}),
    ("anthropic cut stream", ANTHROPIC, {"stream": True}, {"x-simulate-fault": "cut_stream"}),
]


@pytest.fixture(scope="module")
def fixed_sim() -> Iterator[RunningSimulator]:
    with RunningSimulator(SimulatorOptions(deterministic=True)) as running:
        yield running


def read(client: Any, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[Any, ...]:
    """Everything a caller can observe of one streamed read."""
    if path == RESPONSES:
        payload = {"model": "LongCat-2.0", "max_output_tokens": 64, "input": MESSAGES, **body}
    else:
        payload = {"model": "LongCat-Flash-Chat", "max_tokens": 64, "messages": MESSAGES, **body}
    all_headers = {"authorization": f"Bearer {KEY}", **headers}
    pieces: list[bytes] = []
    status = None
    try:
        with client.stream("POST", path, json=payload, headers=all_headers) as response:
            status = response.status_code
            for piece in response.iter_bytes():
                pieces.append(piece)
    except Exception as exc:
        return status, b"".join(pieces), type(exc), str(exc)
    return status, b"".join(pieces), None, None


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize(("name", "path", "body", "headers"), CASES, ids=[c[0] for c in CASES])
def test_caller_reads_the_same_bytes_and_exceptions(
    fixed_sim: RunningSimulator,
    captured: CapturedCalls,
    http: types.ModuleType,
    name: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    sent = body
    encoding = headers.get("x-simulate-compress")
    asks_usage = path == OPENAI and body.get("stream") and "stream_options" not in body
    if asks_usage and encoding not in decoded_by(http):
        # A body in a coding the client does not decode (nor asks for): the client hands it to
        # the caller as it came, and so does the wrapper, which cannot take out the usage chunk
        # it asked for without decoding it. The caller reads the server's answer to the request
        # that went out: byte for byte what the plain client reads when it asks for usage.
        # (httpx2 decodes zstd only with its optional zstd extra.)
        sent = {**body, "stream_options": {"include_usage": True}}
    with http.Client(base_url=fixed_sim.base_url) as plain:
        expected = read(plain, path, sent, headers)
    with monitor.instrument(http.Client(base_url=fixed_sim.base_url), recorder=captured) as wrapped:
        actual = read(wrapped, path, body, headers)
    assert actual == expected
    assert expected[1] or expected[2]  # something was read or raised: the case is not empty
    (record,) = captured.records
    assert record.status_code == expected[0]


def decoded_by(http: types.ModuleType) -> set[str | None]:
    """The content codings a client of ``http`` decodes (None: the body is not encoded)."""
    return {None, *http._decoders.SUPPORTED_DECODERS}


def reported_usage(sim: RunningSimulator) -> tuple[int, int, int]:
    """The (input, output, total) tokens the simulator reports for the streamed chat call."""
    payload = {
        "model": "LongCat-Flash-Chat",
        "max_tokens": 64,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx2.Client(base_url=sim.base_url) as client:
        response = client.post(OPENAI, json=payload, headers={"authorization": f"Bearer {KEY}"})
    (usage,) = [
        json.loads(line[len("data: ") :])["usage"]
        for line in response.text.splitlines()
        if line.startswith("data: {") and '"choices":[]' in line
    ]
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_the_record_has_the_reported_usage_whether_or_not_the_client_decodes_the_body(
    fixed_sim: RunningSimulator, captured: CapturedCalls, http: types.ModuleType, encoding: str
) -> None:
    with monitor.instrument(http.Client(base_url=fixed_sim.base_url), recorder=captured) as wrapped:
        answer = read(wrapped, OPENAI, {"stream": True}, {"x-simulate-compress": encoding})
    assert answer[0] == 200 and answer[2] is None
    # where the client decodes the body the caller reads plain events, else the encoded bytes
    assert (answer[1].startswith(b"data: ")) == (encoding in decoded_by(http))
    record = captured.only()
    assert record.error_type is None and record.usage_source == "reported"
    tokens = (record.input_tokens, record.output_tokens, record.total_tokens)
    assert tokens == reported_usage(fixed_sim)


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_a_coding_asked_for_that_the_client_does_not_decode_gets_no_added_usage_chunk(
    fixed_sim: RunningSimulator, captured: CapturedCalls, http: types.ModuleType
) -> None:
    # The caller asks for zstd itself (to decode it itself, where its client does not): the
    # body would reach it as it came, so the wrapper asks for no usage it could not take out.
    headers = {"accept-encoding": "zstd", "x-simulate-compress": "zstd"}
    with http.Client(base_url=fixed_sim.base_url) as plain:
        expected = read(plain, OPENAI, {"stream": True}, headers)
    with monitor.instrument(http.Client(base_url=fixed_sim.base_url), recorder=captured) as wrapped:
        actual = read(wrapped, OPENAI, {"stream": True}, headers)
    assert actual == expected and expected[0] == 200
    record = captured.only()
    assert record.error_type is None and record.output_tokens
    if "zstd" in decoded_by(http):  # decoded in the client's place, the usage chunk taken out
        assert record.usage_source == "reported"
    else:  # counted from the text the monitor decoded for itself
        assert record.usage_source == "estimated"


async def test_async_caller_reads_the_same_bytes(
    fixed_sim: RunningSimulator, captured: CapturedCalls
) -> None:
    async def read_async(client: Any) -> bytes:
        payload = {"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": True}
        async with client.stream(
            "POST",
            OPENAI,
            json=payload,
            headers={"authorization": f"Bearer {KEY}", "x-simulate-compress": "gzip"},
        ) as response:
            return b"".join([piece async for piece in response.aiter_bytes()])

    async with httpx2.AsyncClient(base_url=fixed_sim.base_url) as plain:
        expected = await read_async(plain)
    async with monitor.instrument(
        httpx2.AsyncClient(base_url=fixed_sim.base_url), recorder=captured
    ) as wrapped:
        actual = await read_async(wrapped)
    assert actual == expected and b"[DONE]" in actual
    assert captured.only().usage_source == "reported"


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
async def test_async_caller_reads_the_same_responses_stream(
    fixed_sim: RunningSimulator, http: types.ModuleType
) -> None:
    async def read_async(client: Any) -> bytes:
        payload = {"model": "LongCat-2.0", "input": "Write a haiku about quotas.", "stream": True}
        async with client.stream(
            "POST", RESPONSES, json=payload, headers={"authorization": f"Bearer {KEY}"}
        ) as response:
            return b"".join([piece async for piece in response.aiter_bytes()])

    captured = CapturedCalls()
    async with http.AsyncClient(base_url=fixed_sim.base_url) as plain:
        expected = await read_async(plain)
    async with monitor.instrument(
        http.AsyncClient(base_url=fixed_sim.base_url), recorder=captured
    ) as wrapped:
        actual = await read_async(wrapped)
    assert actual == expected and b"response.completed" in actual and b"[DONE]" not in actual
    record = captured.only()
    assert record.error_type is None and record.usage_source == "reported"
