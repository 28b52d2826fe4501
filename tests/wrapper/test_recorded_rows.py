"""Instrumented SDK calls land in ``api_calls`` via the real recorder, on SQLite and Postgres."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
import sqlalchemy as sa

import monitor
from monitor.capture.fingerprint import key_id
from monitor.config import get_settings
from monitor.simulator import RunningSimulator
from monitor.store.engine import make_engine
from monitor.store.models import ApiCall

KEY = "sk-rows-test-5f0e1d2c3b4a-QRST"
MESSAGES = [{"role": "user", "content": "How many tokens have I used today?"}]


def rows(url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            table = ApiCall.__table__
            result = conn.execute(sa.select(table).order_by(table.c.id))
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    get_settings.cache_clear()


def test_rows_field_by_field(
    database_url: str, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_database(monkeypatch, database_url)
    oai = monitor.instrument(
        openai.OpenAI(base_url=sim.openai_base_url, api_key=KEY, max_retries=0)
    )
    ant = monitor.instrument(
        anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key=KEY, max_retries=0)
    )
    with monitor.tags(feature="report", user="dana"):
        raw = oai.chat.completions.with_raw_response.create(
            model="LongCat-Flash-Chat", messages=MESSAGES
        )
    completion = raw.parse()
    with ant.messages.stream(
        model="LongCat-2.0",
        max_tokens=100,
        messages=MESSAGES,
        extra_headers={"x-simulate-cached-tokens": "9"},
    ) as stream:
        for _ in stream.text_stream:
            pass
        final = stream.get_final_message()
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(
            model="LongCat-Flash-Lite",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-simulate-fault": "rate_limit"},
        )
    assert monitor.flush(timeout=10)
    oai.close()
    ant.close()

    plain, streamed, limited = rows(database_url)
    for row in (plain, streamed, limited):
        assert row["key_id"] == key_id(KEY) and row["key_hint"] == "QRST"
        assert row["started_at"].tzinfo is not None
        assert row["latency_ms"] > 0 and row["attempt"] == 0 and row["source"] == "wrapper"
        assert KEY not in str(row)
    assert completion.usage is not None
    assert plain["api"] == "openai" and plain["endpoint"] == "/openai/v1/chat/completions"
    assert (plain["model"], bool(plain["stream"]), plain["status_code"]) == (
        "LongCat-Flash-Chat",
        False,
        200,
    )
    assert plain["error_type"] is None and plain["usage_source"] == "reported"
    assert (plain["input_tokens"], plain["output_tokens"], plain["total_tokens"]) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    )
    assert plain["request_id"] == raw.headers["x-request-id"]
    assert plain["labels"] == {"feature": "report", "user": "dana"}

    assert streamed["api"] == "anthropic" and bool(streamed["stream"])
    assert streamed["model"] == "LongCat-2.0" and streamed["ttft_ms"] > 0
    assert streamed["input_tokens"] == final.usage.input_tokens
    assert streamed["output_tokens"] == final.usage.output_tokens
    assert streamed["cache_read_tokens"] == 9
    assert streamed["labels"] == {}

    assert (limited["status_code"], limited["error_type"]) == (429, "rate_limit")
    assert limited["error_code"] == "rate_limit_exceeded" and limited["retry_after_s"] == 60
    assert limited["total_tokens"] is None and limited["usage_source"] == "none"


def test_the_embedded_default_creates_and_upgrades_itself(sim: RunningSimulator) -> None:
    url = get_settings().database_url  # a file that does not exist yet (see tests/conftest.py)
    client = monitor.instrument(
        openai.OpenAI(base_url=sim.openai_base_url, api_key=KEY, max_retries=0)
    )
    client.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
    client.close()
    assert monitor.flush(timeout=10)
    (row,) = rows(url)
    assert row["total_tokens"] > 0
