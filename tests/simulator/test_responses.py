"""The simulator's Responses API and today's refusals, through the real openai SDK."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import pytest

from monitor.simulator import RunningSimulator, SimulatorOptions

MODEL = "LongCat-2.0"


@pytest.fixture(scope="module")
def client(sim: RunningSimulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0) as client:
        yield client


def test_a_response_body_reports_every_usage_field(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        instructions="Answer briefly.",
        input="Summarise the quota rules.",
        reasoning={"effort": "medium"},
        extra_headers={"x-simulate-cached-tokens": "8"},
    )
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens_details.cached_tokens == 8
    assert usage.output_tokens_details.reasoning_tokens > 0
    assert usage.output_tokens == (
        len(response.output_text.split()) + usage.output_tokens_details.reasoning_tokens
    )
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_a_stream_ends_with_completed_and_no_done(sim: RunningSimulator) -> None:
    body = {"model": MODEL, "input": "Say hello.", "stream": True}
    with httpx2.Client(base_url=sim.base_url) as http:
        raw = http.post(
            "/openai/v1/responses", json=body, headers={"authorization": "Bearer sk-test"}
        ).content
    assert b"[DONE]" not in raw
    assert raw.rstrip().splitlines()[-2] == b"event: response.completed"


def test_the_sdk_streams_a_response_to_its_end(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="Say hello.", max_output_tokens=500) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text and final.usage is not None


@pytest.mark.parametrize(
    ("fault", "event"),
    [
        ("stream_error", "error"),
        ("response_failed", "response.failed"),
        ("response_incomplete", "response.incomplete"),
    ],
)
def test_stream_faults_end_with_the_responses_failure_events(
    client: openai.OpenAI, fault: str, event: str
) -> None:
    stream = client.responses.create(
        model=MODEL, input="Say hello.", stream=True, extra_headers={"x-simulate-fault": fault}
    )
    kinds = []
    try:
        kinds = [e.type for e in stream]
    except openai.APIError:
        kinds.append("error")  # the SDK raises on an error event
    assert kinds[-1] == event
    assert "response.output_text.delta" in kinds


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("quota_exhausted", 402, "insufficient_quota"),
        ("insufficient_quota", 403, "insufficient_quota"),
        ("bad_gateway", 502, "bad_gateway"),
        ("service_unavailable", 503, "service_unavailable"),
    ],
)
def test_todays_refusals(client: openai.OpenAI, fault: str, status: int, code: str) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        client.responses.create(model=MODEL, input="hi", extra_headers={"x-simulate-fault": fault})
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == code


def test_a_key_that_spent_its_budget_gets_402() -> None:
    with (
        RunningSimulator(SimulatorOptions(key_token_budget=100)) as sim,
        openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-budget", max_retries=0) as client,
    ):
        spent = 0
        with pytest.raises(openai.APIStatusError) as raised:
            for _ in range(20):
                response = client.responses.create(model=MODEL, input="Say hello.")
                assert response.usage is not None
                spent += response.usage.total_tokens
        assert raised.value.status_code == 402 and spent >= 100
        other = openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-other", max_retries=0)
        with other:
            assert other.responses.create(model=MODEL, input="Say hello.").usage is not None


def test_thinking_switch_and_reasoning_content(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    on = client.chat.completions.create(
        model=MODEL, messages=messages, extra_body={"thinking": {"type": "enabled"}}
    )
    off = client.chat.completions.create(
        model=MODEL, messages=messages, extra_body={"thinking": {"type": "disabled"}}
    )
    assert on.usage is not None and on.usage.completion_tokens_details is not None
    assert on.usage.completion_tokens_details.reasoning_tokens
    assert getattr(on.choices[0].message, "reasoning_content", None)
    assert off.usage is not None and off.usage.completion_tokens_details is not None
    assert off.usage.completion_tokens_details.reasoning_tokens == 0


def test_models_lists_todays_models(client: openai.OpenAI) -> None:
    names = {model.id for model in client.models.list()}
    assert {"LongCat-2.0", "LongCat-2.5-Preview"} <= names
