"""The simulator through the real anthropic SDK: shapes, usage, every fault, retries, encodings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from monitor.simulator import Fault, RunningSimulator

MODEL = "LongCat-Flash-Chat"
MESSAGES: list[Any] = [{"role": "user", "content": "Summarise the quota rules in one line."}]


@pytest.fixture(scope="module")
def client(sim: RunningSimulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=sim.anthropic_base_url, api_key="sk-test", max_retries=0
    ) as client:
        yield client


def fault(name: str, **extra: str) -> dict[str, str]:
    return {"x-simulate-fault": name, **extra}


def test_non_stream_message(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    message = raw.parse()

    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["content-type"] == "application/json"
    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    [block] = message.content
    assert block.type == "text"
    assert message.usage.output_tokens == len(block.text.split())
    assert 10 < message.usage.input_tokens < 30
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


def test_system_prompt_counts_as_input(client: anthropic.Anthropic) -> None:
    plain = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    with_system = client.messages.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, system="You are terse. " * 40
    )
    assert with_system.usage.input_tokens - plain.usage.input_tokens > 100


def test_max_tokens_caps_output(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=4, messages=MESSAGES)
    assert message.usage.output_tokens == 4
    assert message.stop_reason == "max_tokens"


def test_cached_tokens_are_cache_reads(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=MESSAGES,
        extra_headers={"x-simulate-cached-tokens": "2048"},
    )
    assert message.usage.cache_read_input_tokens == 2048
    # Anthropic's input_tokens is the uncached part only.
    assert message.usage.input_tokens == 0


def test_thinking_model_spends_thinking_tokens(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="LongCat-Flash-Thinking", max_tokens=1024, messages=MESSAGES
    )
    thinking, text = message.content
    assert thinking.type == "thinking" and text.type == "text"
    assert message.usage.output_tokens == len(thinking.thinking.split()) + len(text.text.split())


def test_stream_event_sequence_and_usage(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
        events = list(stream)
        final = stream.get_final_message()
        headers = stream.response.headers

    assert headers["content-type"].startswith("text/event-stream")
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_delta") >= 3
    start = events[0]
    assert start.type == "message_start"
    assert start.message.usage.output_tokens == 1
    assert start.message.usage.input_tokens > 0
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == len(final.content[0].text.split())  # type: ignore[union-attr]
    assert final.usage.output_tokens == delta.usage.output_tokens


@pytest.mark.parametrize(
    ("name", "error", "status"),
    [
        (Fault.AUTH, anthropic.AuthenticationError, 401),
        (Fault.PERMISSION, anthropic.PermissionDeniedError, 403),
        (Fault.RATE_LIMIT, anthropic.RateLimitError, 429),
        (Fault.BAD_REQUEST, anthropic.BadRequestError, 400),
        (Fault.CONTEXT_LENGTH, anthropic.BadRequestError, 400),
        (Fault.NOT_FOUND, anthropic.NotFoundError, 404),
        (Fault.SERVER_ERROR, anthropic.InternalServerError, 500),
        (Fault.OVERLOADED, anthropic.OverloadedError, 529),
    ],
)
def test_status_faults_raise_the_sdk_error(
    client: anthropic.Anthropic, name: Fault, error: type[anthropic.APIStatusError], status: int
) -> None:
    with pytest.raises(error) as caught:
        client.messages.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=fault(name)
        )
    assert caught.value.status_code == status
    assert caught.value.response.headers["request-id"].startswith("req_")
    body = caught.value.response.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}


def test_rate_limit_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=fault("rate_limit")
        )
    assert caught.value.response.headers["retry-after"] == "60"
    assert caught.value.response.json()["error"]["type"] == "rate_limit_error"


def test_keys_via_bearer_missing_and_revoked(sim: RunningSimulator) -> None:
    with anthropic.Anthropic(
        base_url=sim.anthropic_base_url, auth_token="sk-bearer", max_retries=0
    ) as bearer:
        assert bearer.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES).content

    with (
        anthropic.Anthropic(
            base_url=sim.anthropic_base_url, api_key="key-revoked", max_retries=0
        ) as revoked,
        pytest.raises(anthropic.AuthenticationError),
    ):
        revoked.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)


def test_cut_stream_ends_in_a_connection_error_after_some_content(
    client: anthropic.Anthropic,
) -> None:
    # anthropic up to 2.16 let the transport's RemoteProtocolError through mid-stream; from 2.17
    # it wraps it in APIConnectionError. Either way the caller sees a broken connection caused by
    # the server closing the body early, after some content and before message_stop.
    stream = client.messages.create(
        model=MODEL,
        max_tokens=256,
        messages=MESSAGES,
        stream=True,
        extra_headers=fault("cut_stream"),
    )
    kinds: list[str] = []
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)) as caught:
        for event in stream:
            kinds.append(event.type)
    causes: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        causes.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(c, httpx2.RemoteProtocolError) for c in causes)
    assert "content_block_delta" in kinds
    assert "message_stop" not in kinds


def test_stream_error_event(client: anthropic.Anthropic) -> None:
    stream = client.messages.create(
        model=MODEL,
        max_tokens=256,
        messages=MESSAGES,
        stream=True,
        extra_headers=fault("stream_error"),
    )
    kinds: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in stream:
            kinds.append(event.type)
    assert "content_block_delta" in kinds
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_no_usage_fault(client: anthropic.Anthropic) -> None:
    response = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=fault("no_usage")
    )
    assert "usage" not in response.http_response.json()


def test_fault_times_let_sdk_retries_succeed(sim: RunningSimulator) -> None:
    headers = fault(
        "overloaded", **{"x-simulate-fault-times": "2", "x-simulate-retry-after-ms": "5"}
    )
    with anthropic.Anthropic(
        base_url=sim.anthropic_base_url, api_key="sk-test", max_retries=2
    ) as retrying:
        raw = retrying.messages.with_raw_response.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=headers
        )
    assert raw.retries_taken == 2
    assert raw.parse().content


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_compressed_responses_decode_in_the_sdk(client: anthropic.Anthropic, encoding: str) -> None:
    headers = {"x-simulate-compress": encoding}
    message = client.messages.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=headers
    )
    assert message.usage.output_tokens > 0
    with client.messages.stream(
        model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=headers
    ) as stream:
        assert stream.response.headers["content-encoding"] == encoding
        final = stream.get_final_message()
    assert final.usage.output_tokens == len(final.content[0].text.split())  # type: ignore[union-attr]


async def test_async_client_stream(sim: RunningSimulator) -> None:
    async with (
        anthropic.AsyncAnthropic(
            base_url=sim.anthropic_base_url, api_key="sk-test", max_retries=0
        ) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream,
    ):
        final = await stream.get_final_message()
    assert final.usage.output_tokens > 0
