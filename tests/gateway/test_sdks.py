"""The real openai and anthropic SDKs through the gateway: same answers, same errors, recorded."""

from __future__ import annotations

import anthropic
import openai
import pytest
from capture import CapturedCalls
from gateway_support import KEY, MESSAGES
from sdk_http import cut_stream_errors

from monitor.gateway import RunningGateway
from monitor.simulator import RunningSimulator


def test_openai_sdk_body_and_stream(
    sim: RunningSimulator, gateway: RunningGateway, captured: CapturedCalls
) -> None:
    with (
        openai.OpenAI(base_url=sim.openai_base_url, api_key=KEY, max_retries=0) as direct,
        openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0) as through,
    ):
        for client in (direct, through):
            client.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
        expected = direct.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
        got = through.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
        assert got.choices[0].message.content == expected.choices[0].message.content
        assert got.usage == expected.usage

        texts = []
        for client in (direct, through):
            chunks = list(
                client.chat.completions.create(
                    model="LongCat-Flash-Chat", messages=MESSAGES, stream=True
                )
            )
            assert all(chunk.choices for chunk in chunks)  # no usage chunk: the client did not ask
            texts.append("".join(chunk.choices[0].delta.content or "" for chunk in chunks))
        assert texts[0] == texts[1]
        records = captured.records
        assert [r.stream for r in records] == [False, False, True]
        assert records[2].usage_source == "reported"
        assert records[2].total_tokens and records[2].output_tokens


def test_anthropic_sdk_body_and_stream(
    sim: RunningSimulator, gateway: RunningGateway, captured: CapturedCalls
) -> None:
    with (
        anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key=KEY, max_retries=0) as direct,
        anthropic.Anthropic(
            base_url=gateway.anthropic_base_url, api_key=KEY, max_retries=0
        ) as through,
    ):
        expected = direct.messages.create(model="LongCat-2.0", max_tokens=100, messages=MESSAGES)
        got = through.messages.create(model="LongCat-2.0", max_tokens=100, messages=MESSAGES)
        assert got.content == expected.content and got.usage == expected.usage
        with through.messages.stream(
            model="LongCat-2.0",
            max_tokens=100,
            messages=MESSAGES,
            extra_headers={"x-simulate-cached-tokens": "7"},
        ) as stream:
            "".join(stream.text_stream)
            final = stream.get_final_message()
        plain, streamed = captured.records
        assert (plain.input_tokens, plain.output_tokens) == (
            expected.usage.input_tokens,
            expected.usage.output_tokens,
        )
        assert streamed.cache_read_tokens == 7 == final.usage.cache_read_input_tokens
        assert streamed.output_tokens == final.usage.output_tokens


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("auth", openai.AuthenticationError),
        ("rate_limit", openai.RateLimitError),
        ("context_length", openai.BadRequestError),
        ("server_error", openai.InternalServerError),
    ],
)
def test_openai_sdk_raises_the_same_errors(
    gateway: RunningGateway, captured: CapturedCalls, fault: str, error: type[Exception]
) -> None:
    with openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0) as client:
        with pytest.raises(error):
            client.chat.completions.create(
                model="LongCat-Flash-Chat",
                messages=MESSAGES,
                extra_headers={"x-simulate-fault": fault},
            )
        assert captured.only().error_type is not None


def test_anthropic_sdk_errors_and_broken_streams(
    gateway: RunningGateway, captured: CapturedCalls
) -> None:
    with anthropic.Anthropic(
        base_url=gateway.anthropic_base_url, api_key=KEY, max_retries=0
    ) as client:
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            client.messages.create(
                model="LongCat-2.0",
                max_tokens=50,
                messages=MESSAGES,
                extra_headers={"x-simulate-fault": "overloaded"},
            )
        assert overloaded.value.status_code == 529
        with (
            pytest.raises(anthropic.APIStatusError),
            client.messages.stream(
                model="LongCat-2.0",
                max_tokens=50,
                messages=MESSAGES,
                extra_headers={"x-simulate-fault": "stream_error"},
            ) as stream,
        ):
            for _ in stream.text_stream:
                pass
        with (
            pytest.raises(cut_stream_errors(anthropic)),
            client.messages.stream(
                model="LongCat-2.0",
                max_tokens=50,
                messages=MESSAGES,
                extra_headers={"x-simulate-fault": "cut_stream"},
            ) as stream,
        ):
            for _ in stream.text_stream:
                pass
        assert [r.error_type for r in captured.records] == [
            "overloaded",
            "stream_error",
            "stream_interrupted",
        ]


async def test_async_sdks(gateway: RunningGateway, captured: CapturedCalls) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.openai_base_url, api_key=KEY, max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="LongCat-Flash-Lite", messages=MESSAGES, stream=True
        )
        async for _ in stream:
            pass
    record = captured.only()
    assert (record.model, record.source, record.error_type) == (
        "LongCat-Flash-Lite",
        "gateway",
        None,
    )
