"""The Responses API and a coding tool's calls through the gateway: recorded like wrapped calls,
with every usage field, the tool that made them and its session."""

from __future__ import annotations

import httpx2
import openai
import pytest
from capture import CapturedCalls
from gateway_support import KEY

from monitor.gateway import RunningGateway


async def test_openai_sdk_responses_body_and_stream_sync_and_async(
    gateway: RunningGateway, captured: CapturedCalls
) -> None:
    options = {"reasoning": {"effort": "low"}, "extra_headers": {"x-simulate-cached-tokens": "6"}}
    with openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0) as client:
        body = client.responses.create(model="LongCat-2.0", input="Hi", **options)
        with client.responses.stream(model="LongCat-2.0", input="Hi", **options) as stream:
            for _ in stream:
                pass
            streamed = stream.get_final_response()
    async with openai.AsyncOpenAI(
        base_url=gateway.openai_base_url, api_key=KEY, max_retries=0
    ) as async_client:
        async_body = await async_client.responses.create(model="LongCat-2.0", input="Hi", **options)
    records = captured.records
    assert [r.stream for r in records] == [False, True, False]
    for record, usage in zip(records, [body.usage, streamed.usage, async_body.usage], strict=True):
        assert usage is not None
        assert record.source == "gateway" and record.endpoint == "/openai/v1/responses"
        assert record.error_type is None and record.usage_source == "reported"
        assert (record.input_tokens, record.output_tokens) == (
            usage.input_tokens,
            usage.output_tokens,
        )
        assert record.cache_read_tokens == 6 and record.reasoning_tokens
        assert record.client == f"openai-python {openai.__version__}"


@pytest.mark.parametrize("fault", ["response_failed", "quota_exhausted"])
def test_failures_through_the_gateway(
    gateway: RunningGateway, captured: CapturedCalls, fault: str
) -> None:
    with httpx2.Client(base_url=gateway.base_url) as client:
        client.post(
            "/openai/v1/responses",
            json={"model": "LongCat-2.0", "input": "Hi", "stream": True},
            headers={"authorization": f"Bearer {KEY}", "x-simulate-fault": fault},
        )
    record = captured.only()
    expected = "stream_error" if fault == "response_failed" else "quota_exhausted"
    assert record.error_type == expected


def test_claude_code_through_the_gateway(gateway: RunningGateway, captured: CapturedCalls) -> None:
    headers = {
        "authorization": f"Bearer {KEY}",
        "user-agent": "claude-cli/2.1.328 (external, sdk-cli)",
        "x-claude-code-session-id": "5b7e-session",
    }
    body = {
        "model": "LongCat-2.0",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Fix the failing test."}],
    }
    with httpx2.Client(base_url=gateway.base_url) as client:
        answer = client.post("/anthropic/v1/messages", json=body, headers=headers)
    assert answer.status_code == 200
    record = captured.only()
    assert record.client == "claude-code 2.1.328"
    assert record.labels == {"session": "5b7e-session"}
    assert record.usage_source == "reported" and record.total_tokens
