"""The Responses API through the real openai SDK and raw httpx/httpx2 clients, instrumented,
against the simulator: every usage field lands, the stream's end is a success, its failure events
and cuts are classified.

The locked suite runs the SDK on httpx2 (openai 3.x); ``.ci/older-sdks`` runs this file again with
openai 1.x on ``httpx``, and the raw ``httpx`` cases here cover that path in the locked suite too.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from capture import CapturedCalls
from sdk_http import cut_stream_errors

import monitor
from monitor.capture.fingerprint import key_id
from monitor.simulator import RunningSimulator

KEY = "sk-longcat-responses-0123456789-ABCD"
MODEL = "LongCat-2.0"
CACHED = {"x-simulate-cached-tokens": "8"}


@pytest.fixture
def client(sim: RunningSimulator, captured: CapturedCalls) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.openai_base_url, api_key=KEY, max_retries=0) as plain:
        yield monitor.instrument(plain, recorder=captured)


def assert_reported(record: monitor.CallRecord, usage: Any, stream: bool) -> None:
    assert record.endpoint == "/openai/v1/responses" and record.api == "openai"
    assert record.stream is stream and record.model == MODEL
    assert record.key_id == key_id(KEY) and record.status_code == 200
    assert record.error_type is None and record.usage_source == "reported"
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
        usage.total_tokens,
    )
    assert record.cache_read_tokens == usage.input_tokens_details.cached_tokens == 8
    assert record.reasoning_tokens == usage.output_tokens_details.reasoning_tokens
    assert record.reasoning_tokens and record.reasoning_tokens > 0


def test_responses_create(client: openai.OpenAI, captured: CapturedCalls) -> None:
    response = client.responses.create(
        model=MODEL,
        input="Summarise the report.",
        reasoning={"effort": "low"},
        extra_headers=CACHED,
    )
    assert_reported(captured.only(), response.usage, stream=False)


def test_responses_stream(client: openai.OpenAI, captured: CapturedCalls) -> None:
    with client.responses.stream(
        model=MODEL,
        input="Summarise the report.",
        reasoning={"effort": "low"},
        extra_headers=CACHED,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    record = captured.only()
    assert_reported(record, final.usage, stream=True)
    assert record.ttft_ms is not None and record.ttft_ms <= record.latency_ms  # type: ignore[operator]


def test_responses_create_with_stream_true(client: openai.OpenAI, captured: CapturedCalls) -> None:
    usage = None
    for event in client.responses.create(
        model=MODEL, input="Hi", stream=True, reasoning={"effort": "low"}, extra_headers=CACHED
    ):
        if event.type == "response.completed":
            usage = event.response.usage
    assert_reported(captured.only(), usage, stream=True)


async def test_async_responses(sim: RunningSimulator, captured: CapturedCalls) -> None:
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key=KEY, max_retries=0
    ) as plain:
        client = monitor.instrument(plain, recorder=captured)
        body = await client.responses.create(
            model=MODEL, input="Hi", reasoning={"effort": "low"}, extra_headers=CACHED
        )
        async with client.responses.stream(
            model=MODEL, input="Hi", reasoning={"effort": "low"}, extra_headers=CACHED
        ) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_response()
    first, second = captured.records
    assert_reported(first, body.usage, stream=False)
    assert_reported(second, final.usage, stream=True)


@pytest.mark.parametrize(
    ("fault", "code", "source"),
    [
        ("response_failed", "server_error", "estimated"),
        ("response_incomplete", "content_filter", "reported"),
        ("stream_error", "server_error", "estimated"),
    ],
)
def test_failure_events_are_stream_errors(
    client: openai.OpenAI, captured: CapturedCalls, fault: str, code: str, source: str
) -> None:
    try:
        for _ in client.responses.create(
            model=MODEL, input="Hi", stream=True, extra_headers={"x-simulate-fault": fault}
        ):
            pass
    except openai.APIError:
        pass  # the SDK raises on an error event; the record is the subject here
    record = captured.only()
    assert (record.error_type, record.error_code) == ("stream_error", code)
    assert record.error_message and record.usage_source == source


def test_a_cut_stream_is_interrupted_with_tokens_estimated(
    client: openai.OpenAI, captured: CapturedCalls
) -> None:
    seen = ""
    with pytest.raises(cut_stream_errors(openai)):
        for event in client.responses.create(
            model=MODEL, input="Hi", stream=True, extra_headers={"x-simulate-fault": "cut_stream"}
        ):
            if event.type == "response.output_text.delta":
                seen += event.delta
    record = captured.only()
    assert seen and record.error_type == "stream_interrupted"
    assert record.usage_source == "estimated"
    assert record.output_tokens and record.input_tokens


@pytest.mark.parametrize("fault", ["quota_exhausted", "insufficient_quota"])
def test_quota_refusals(client: openai.OpenAI, captured: CapturedCalls, fault: str) -> None:
    with pytest.raises(openai.APIStatusError):
        client.responses.create(model=MODEL, input="Hi", extra_headers={"x-simulate-fault": fault})
    record = captured.only()
    assert record.error_type == "quota_exhausted" and record.error_code == "insufficient_quota"
    assert record.usage_source == "none"


def test_503_is_a_server_error_with_its_code(
    client: openai.OpenAI, captured: CapturedCalls
) -> None:
    with pytest.raises(openai.InternalServerError):
        client.responses.create(
            model=MODEL, input="Hi", extra_headers={"x-simulate-fault": "service_unavailable"}
        )
    record = captured.only()
    assert (record.status_code, record.error_type) == (503, "server_error")
    assert record.error_code == "service_unavailable"


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_raw_clients(
    sim: RunningSimulator, captured: CapturedCalls, http: types.ModuleType, stream: bool
) -> None:
    body = {"model": MODEL, "input": "Hi", "stream": stream, "reasoning": {"effort": "low"}}
    headers = {"authorization": f"Bearer {KEY}", **CACHED}
    client = monitor.instrument(http.Client(base_url=sim.base_url), recorder=captured)
    with client, client.stream("POST", "/openai/v1/responses", json=body, headers=headers) as got:
        got.read()
    record = captured.only()
    assert record.error_type is None and record.usage_source == "reported"
    assert record.stream is stream
    assert record.cache_read_tokens == 8 and record.reasoning_tokens


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
async def test_raw_async_clients(
    sim: RunningSimulator, captured: CapturedCalls, http: types.ModuleType
) -> None:
    body = {"model": MODEL, "input": "Hi", "stream": True, "reasoning": {"effort": "low"}}
    headers = {"authorization": f"Bearer {KEY}", **CACHED}
    async with (
        monitor.instrument(http.AsyncClient(base_url=sim.base_url), recorder=captured) as client,
        client.stream("POST", "/openai/v1/responses", json=body, headers=headers) as answer,
    ):
        await answer.aread()
    record = captured.only()
    assert record.error_type is None and record.usage_source == "reported"
    assert record.cache_read_tokens == 8 and record.reasoning_tokens


def test_the_request_is_sent_as_the_caller_wrote_it(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    """A Responses API stream always ends with its usage: the monitor adds no stream_options."""
    sent: list[bytes] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.content)
        return httpx2.Response(200, content=b"", headers={"content-type": "text/event-stream"})

    client = monitor.instrument(
        httpx2.Client(transport=httpx2.MockTransport(answer)), recorder=captured
    )
    payload = b'{"model":"LongCat-2.0","input":"Hi","stream":true}'
    with client:
        client.post("http://longcat.test/openai/v1/responses", content=payload)
    assert sent == [payload]
