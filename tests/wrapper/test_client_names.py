"""Which tool made a call, from its User-Agent: one row per tool a team runs."""

from __future__ import annotations

import httpx
import openai
import pytest
from capture import CapturedCalls

import monitor
from monitor.capture.clients import MAX_CLIENT_CHARS, client_name
from monitor.simulator import RunningSimulator

TABLE = [
    ("claude-cli/2.1.328 (external, sdk-cli)", "claude-code 2.1.328"),
    ("claude-cli/1.0.0 (external, cli)", "claude-code 1.0.0"),
    ("OpenAI/Python 3.63.0", "openai-python 3.63.0"),
    ("OpenAI/Python 1.109.1", "openai-python 1.109.1"),
    ("AsyncOpenAI/Python 2.8.0", "openai-python 2.8.0"),
    ("AsyncAnthropic/Python 0.72.0", "anthropic-python 0.72.0"),
    ("OpenAI/JS 5.23.0", "openai-js 5.23.0"),
    ("Anthropic/Python 0.72.0", "anthropic-python 0.72.0"),
    ("Agents/Python 0.24.0", "openai-agents 0.24.0"),
    ("openai-agents/0.24.0", "openai-agents 0.24.0"),
    ("curl/8.5.0", "curl 8.5.0"),
    ("python-httpx/0.28.1", "python-httpx 0.28.1"),
    ("Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0", "Mozilla 5.0"),
    ("my-batch-job", "my-batch-job"),
    ("  codex_cli_rs/0.50.0 (Linux; x86_64)", "codex_cli_rs 0.50.0"),
    ("", None),
    (None, None),
    ("()", None),
]


@pytest.mark.parametrize(("user_agent", "expected"), TABLE)
def test_client_names(user_agent: str | None, expected: str | None) -> None:
    assert client_name(user_agent) == expected


def test_a_long_product_token_is_cut() -> None:
    name = client_name("x" * 500 + "/1.0")
    assert name is not None and len(name) == MAX_CLIENT_CHARS


def test_the_sdk_and_a_tool_are_told_apart(sim: RunningSimulator, captured: CapturedCalls) -> None:
    body = {"model": "LongCat-2.0", "input": "hi"}
    with openai.OpenAI(base_url=sim.openai_base_url, api_key="sk-a", max_retries=0) as plain:
        monitor.instrument(plain, recorder=captured).responses.create(**body)
    claude_code = {
        "authorization": "Bearer sk-a",
        "user-agent": "claude-cli/2.1.328 (external, sdk-cli)",
        "x-claude-code-session-id": "3f1c9a2e-session",
    }
    messages = {
        "model": "LongCat-2.0",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with monitor.instrument(httpx.Client(base_url=sim.base_url), recorder=captured) as client:
        client.post("/anthropic/v1/messages", json=messages, headers=claude_code)
    sdk, tool = captured.records
    assert sdk.client == f"openai-python {openai.__version__}" and "session" not in sdk.labels
    assert tool.client == "claude-code 2.1.328"
    assert tool.labels == {"session": "3f1c9a2e-session"}
