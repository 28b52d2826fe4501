"""What the caller reads is the same with and without the wrapper: bytes, status, exceptions.

The simulator runs in deterministic mode (fixed ids, timestamps and text), so two identical
requests get identical answers and any difference would be the wrapper's doing.
"""

from __future__ import annotations

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
    request: pytest.FixtureRequest,
    http: types.ModuleType,
    name: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    encoding = headers.get("x-simulate-compress")
    if encoding and encoding not in http._decoders.SUPPORTED_DECODERS:
        # A body in an encoding the client cannot decode (it never asks for one): the plain
        # client hands the caller the encoded bytes, but when the wrapper rewrites the stream
        # (to take out the usage chunk it asked for) it decodes them. httpx2 decodes zstd only
        # with its optional zstd extra (backports.zstd on Python < 3.14).
        request.applymarker(
            pytest.mark.xfail(
                reason=f"the wrapper decodes {encoding} that {http.__name__} here would not",
                strict=True,
            )
        )
    with http.Client(base_url=fixed_sim.base_url) as plain:
        expected = read(plain, path, body, headers)
    with monitor.instrument(http.Client(base_url=fixed_sim.base_url), recorder=captured) as wrapped:
        actual = read(wrapped, path, body, headers)
    assert actual == expected
    assert expected[1] or expected[2]  # something was read or raised: the case is not empty
    (record,) = captured.records
    assert record.status_code == expected[0]


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
