"""An agent from the openai-agents package (it calls the Responses API by default) against the
simulator, through an instrumented client: each of its calls lands with its tokens."""

from __future__ import annotations

import openai
import pytest

if int(openai.__version__.split(".")[0]) < 3:
    # openai-agents requires openai 3.x; .ci/older-sdks runs the wrapper tests with openai 1.x.
    pytest.skip(
        f"openai-agents needs openai>=3, this run has openai {openai.__version__}",
        allow_module_level=True,
    )

from agents import Agent, OpenAIResponsesModel, RunConfig, Runner
from capture import CapturedCalls

import monitor
from monitor.simulator import RunningSimulator


async def test_an_agents_calls_land_with_their_tokens(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    async with openai.AsyncOpenAI(
        base_url=sim.openai_base_url, api_key="sk-agent-0123456789", max_retries=0
    ) as plain:
        client = monitor.instrument(plain, recorder=captured)
        agent = Agent(
            name="summariser",
            instructions="Summarise what you are given in one sentence.",
            model=OpenAIResponsesModel(model="LongCat-2.0", openai_client=client),
        )
        config = RunConfig(tracing_disabled=True)
        result = await Runner.run(agent, "The quota resets at midnight.", run_config=config)
        streamed = Runner.run_streamed(agent, "Balances are prepaid.", run_config=config)
        async for _ in streamed.stream_events():
            pass
    assert result.final_output and streamed.final_output
    body, stream = captured.records
    for record, usage, is_stream in (
        (body, result.context_wrapper.usage, False),
        (stream, streamed.context_wrapper.usage, True),
    ):
        assert record.endpoint == "/openai/v1/responses" and record.stream is is_stream
        assert record.error_type is None and record.usage_source == "reported"
        assert record.client is not None and record.client.startswith("openai-agents ")
        assert (record.input_tokens, record.output_tokens, record.total_tokens) == (
            usage.input_tokens,
            usage.output_tokens,
            usage.total_tokens,
        )
