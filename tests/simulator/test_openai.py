"""The simulator through the real openai SDK: shapes, usage, every fault, retries, encodings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from monitor.simulator import Fault, RunningSimulator

MODEL = "LongCat-Flash-Chat"
MESSAGES: list[Any] = [{"role": "user", "content": "Summarise the quota rules in one line."}]


@pytest.fixture(scope="module")
def client(sim: RunningSimulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0) as client:
        yield client


def fault(name: str, **extra: str) -> dict[str, str]:
    return {"x-simulate-fault": name, **extra}


def test_non_stream_usage_adds_up(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    completion = raw.parse()

    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["content-type"] == "application/json"
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == len((choice.message.content or "").split())
    # 4 chars a token plus per-message overhead: a 39-character message is well under 30 tokens.
    assert 10 < usage.prompt_tokens < 30
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_longer_prompt_costs_more_input_tokens(client: openai.OpenAI) -> None:
    short = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    long_messages: list[Any] = [{"role": "user", "content": "word " * 400}]
    long = client.chat.completions.create(model=MODEL, messages=long_messages)
    assert short.usage is not None and long.usage is not None
    assert long.usage.prompt_tokens - short.usage.prompt_tokens > 400


def test_max_tokens_caps_output(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].finish_reason == "length"

    capped = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=3)
    assert capped.usage is not None and capped.usage.completion_tokens == 3


def test_thinking_model_reports_reasoning_tokens(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="LongCat-Flash-Thinking", messages=MESSAGES)
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    reasoning = usage.completion_tokens_details.reasoning_tokens or 0
    words = len((completion.choices[0].message.content or "").split())
    assert reasoning > 0
    assert usage.completion_tokens == reasoning + words


def test_cached_tokens_header(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, extra_headers={"x-simulate-cached-tokens": "8"}
    )
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 8
    assert completion.usage.prompt_tokens >= 8


def test_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    assert len(chunks) >= 3
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert len(text.split()) >= 16


def test_stream_with_include_usage_ends_with_usage_chunk(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())

    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert all(chunk.usage is None for chunk in content)
    words = "".join(chunk.choices[0].delta.content or "" for chunk in content).split()
    assert last.usage.completion_tokens == len(words)
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_no_usage_fault_drops_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=fault("no_usage"),
        )
    )
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


@pytest.mark.parametrize(
    ("name", "error", "status"),
    [
        (Fault.AUTH, openai.AuthenticationError, 401),
        (Fault.PERMISSION, openai.PermissionDeniedError, 403),
        (Fault.RATE_LIMIT, openai.RateLimitError, 429),
        (Fault.BAD_REQUEST, openai.BadRequestError, 400),
        (Fault.CONTEXT_LENGTH, openai.BadRequestError, 400),
        (Fault.NOT_FOUND, openai.NotFoundError, 404),
        (Fault.SERVER_ERROR, openai.InternalServerError, 500),
        (Fault.OVERLOADED, openai.InternalServerError, 503),
    ],
)
def test_status_faults_raise_the_sdk_error(
    client: openai.OpenAI, name: Fault, error: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers=fault(name))
    assert caught.value.status_code == status
    assert caught.value.response.headers["x-request-id"].startswith("req_")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"]
    assert caught.value.body["message"]


def test_rate_limit_carries_longcat_body_and_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_headers=fault("rate_limit")
        )
    assert caught.value.response.headers["retry-after"] == "60"
    body = caught.value.response.json()["error"]
    assert body["code"] == "rate_limit_exceeded"
    assert body["type"] == "rate_limit_error"
    assert body["retry_after"] == 60
    assert body["message"].startswith("Rate limit exceeded")


def test_context_length_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_headers=fault("context_length")
        )
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 131072 tokens" in caught.value.message


def test_missing_and_revoked_keys_are_refused(sim: RunningSimulator) -> None:
    with (
        openai.OpenAI(
            base_url=sim.openai_base_url, api_key="sk-revoked-1", max_retries=0
        ) as revoked,
        pytest.raises(openai.AuthenticationError),
    ):
        revoked.chat.completions.create(model=MODEL, messages=MESSAGES)


def test_cut_stream_is_a_connection_error(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, extra_headers=fault("cut_stream")
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received).strip()


def test_stream_error_arrives_in_band(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, extra_headers=fault("stream_error")
    )
    received = 0
    with pytest.raises(openai.APIError) as caught:
        for _chunk in stream:
            received += 1
    assert received >= 2
    assert not isinstance(caught.value, openai.APIStatusError)
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "server_error"


def test_hang_hits_the_client_timeout(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_headers=fault("hang")
        )


def test_fault_times_let_sdk_retries_succeed(sim: RunningSimulator) -> None:
    headers = fault(
        "server_error", **{"x-simulate-fault-times": "2", "x-simulate-retry-after-ms": "5"}
    )
    with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=2) as retrying:
        raw = retrying.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, extra_headers=headers
        )
        assert raw.retries_taken == 2
        assert raw.parse().choices[0].message.content

    with (
        openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=1) as too_few,
        pytest.raises(openai.InternalServerError),
    ):
        too_few.chat.completions.create(model=MODEL, messages=MESSAGES, extra_headers=headers)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_compressed_responses_decode_in_the_sdk(client: openai.OpenAI, encoding: str) -> None:
    headers = {"x-simulate-compress": encoding}
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, extra_headers=headers
    )
    assert raw.headers["content-encoding"] == encoding
    assert raw.parse().usage is not None

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
    )
    assert chunks[-1].usage is not None


async def test_async_client_streams(sim: RunningSimulator) -> None:
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="sk-test", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None


def test_models_list(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "LongCat-Flash-Chat" in ids
