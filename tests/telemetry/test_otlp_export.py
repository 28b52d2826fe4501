"""OTLP export against a real receiver: the real openai and anthropic SDKs call the simulator
through the instrumented client, the default recorder stores each call and exports it, and the
receiver decodes what arrived with opentelemetry-proto.

Each case of ``CASES`` makes one call and returns the span attributes it expects, taken from what
the SDK itself returned; a new API (the Responses stream) is one more case.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider
from otlp_receiver import OtlpReceiver, attributes, finish
from sqlalchemy import select
from sqlalchemy.orm import Session
from waiting import eventually

import monitor
from monitor.capture.fingerprint import key_id
from monitor.config import get_settings
from monitor.recording.recorder import get_recorder
from monitor.simulator import RunningSimulator
from monitor.store.engine import make_engine
from monitor.store.models import ApiCall
from monitor.telemetry.exporter import OtlpExporter

KEY = "sk-longcat-test-0123456789abcdef-WXYZ"
MODEL = "LongCat-Flash-Chat"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]
CACHED = 40
#: What the conventions name, and what must never be sent.
CONTENT_ATTRIBUTES = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.prompt")


def stored_row() -> ApiCall:
    engine = make_engine(get_settings().database_url)
    try:
        with Session(engine) as session:
            [row] = session.scalars(select(ApiCall)).all()
            session.expunge(row)
    finally:
        engine.dispose()
    return row


def openai_client(sim: RunningSimulator, **headers: str) -> openai.OpenAI:
    client = openai.OpenAI(
        base_url=sim.openai_base_url, api_key=KEY, max_retries=0, default_headers=headers
    )
    return monitor.instrument(client)


def anthropic_client(sim: RunningSimulator, **headers: str) -> anthropic.Anthropic:
    client = anthropic.Anthropic(
        base_url=sim.anthropic_base_url, api_key=KEY, max_retries=0, default_headers=headers
    )
    return monitor.instrument(client)


# --- the cases: each makes one call and returns the attributes the span must carry ------------


def openai_body(sim: RunningSimulator) -> dict[str, Any]:
    with monitor.tags(team="search"):
        reply = openai_client(sim).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert reply.usage is not None
    return {
        "gen_ai.response.model": reply.model,
        "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": reply.usage.completion_tokens,
        "longcat.label.team": "search",
        "longcat.api": "openai",
    }


def openai_stream(sim: RunningSimulator) -> dict[str, Any]:
    chunks = list(
        openai_client(sim).chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    return {
        "gen_ai.request.stream": True,
        "gen_ai.response.model": chunks[0].model,
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }


def anthropic_stream(sim: RunningSimulator) -> dict[str, Any]:
    with anthropic_client(sim).messages.stream(
        model=MODEL, max_tokens=256, messages=MESSAGES
    ) as stream:
        message = stream.get_final_message()
    return {
        "gen_ai.request.stream": True,
        "gen_ai.usage.input_tokens": message.usage.input_tokens,
        "gen_ai.usage.output_tokens": message.usage.output_tokens,
        "longcat.api": "anthropic",
    }


def openai_rate_limited(sim: RunningSimulator) -> dict[str, Any]:
    client = openai_client(sim, **{"x-simulate-fault": "rate_limit"})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    return {"error.type": "rate_limit", "http.response.status_code": 429}


def openai_cached(sim: RunningSimulator) -> dict[str, Any]:
    client = openai_client(sim, **{"x-simulate-cached-tokens": str(CACHED)})
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == CACHED
    return {  # OpenAI's prompt_tokens already hold the cached ones: counted once
        "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,
        "gen_ai.usage.cache_read.input_tokens": CACHED,
    }


def anthropic_cached(sim: RunningSimulator) -> dict[str, Any]:
    client = anthropic_client(sim, **{"x-simulate-cached-tokens": str(CACHED)})
    message = client.messages.create(model=MODEL, max_tokens=256, messages=MESSAGES)
    assert message.usage.cache_read_input_tokens == CACHED
    return {  # Anthropic's input_tokens leave the cached ones out: added once
        "gen_ai.usage.input_tokens": message.usage.input_tokens + CACHED,
        "gen_ai.usage.cache_read.input_tokens": CACHED,
        "gen_ai.usage.output_tokens": message.usage.output_tokens,
    }


def responses_stream(sim: RunningSimulator) -> dict[str, Any]:
    client = openai_client(sim, **{"x-simulate-cached-tokens": str(CACHED)})
    with client.responses.stream(model=MODEL, input="Say hello to the team") as stream:
        response = stream.get_final_response()
    usage = response.usage
    assert usage is not None and usage.input_tokens_details.cached_tokens == CACHED
    return {  # the Responses API's input_tokens already hold the cached ones: counted once
        "gen_ai.request.stream": True,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": CACHED,
        "longcat.endpoint": "/openai/v1/responses",
    }


@dataclass(frozen=True)
class Case:
    call: Callable[[RunningSimulator], dict[str, Any]]
    stream: bool = False
    failed: bool = False


CASES = {
    "openai body": Case(openai_body),
    "openai stream": Case(openai_stream, stream=True),
    "anthropic stream": Case(anthropic_stream, stream=True),
    "openai error": Case(openai_rate_limited, failed=True),
    "openai cached input": Case(openai_cached),
    "anthropic cached input": Case(anthropic_cached),
    "responses stream with cached input": Case(responses_stream, stream=True),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_call_is_one_span_in_the_genai_conventions(
    case: Case, sim: RunningSimulator, receiver: OtlpReceiver
) -> None:
    expected = case.call(sim)
    finish()
    row = stored_row()
    [span] = receiver.spans()
    got = attributes(span.attributes)

    assert span.name == f"chat {MODEL}"
    assert span.kind == Span.SPAN_KIND_CLIENT
    assert {name: got.get(name) for name in expected} == expected
    assert got["gen_ai.operation.name"] == "chat"
    assert got["gen_ai.provider.name"] == "longcat"
    assert got["gen_ai.system"] == "longcat"  # the v1.36 name too, unless opted out
    assert got["gen_ai.request.model"] == MODEL
    assert got["longcat.key.id"] == key_id(KEY) == row.key_id
    assert got["longcat.key.hint"] == "WXYZ"
    assert not any(name in got for name in CONTENT_ATTRIBUTES)
    # start and end from the stored record, to the microsecond
    started_us = round(row.started_at.timestamp() * 1e6)
    assert span.start_time_unix_nano // 1000 == started_us
    duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    assert duration_ms == pytest.approx(row.latency_ms, abs=0.001)
    if case.stream:
        assert got["gen_ai.response.time_to_first_chunk"] == pytest.approx(row.ttft_ms / 1000)
    else:
        assert "gen_ai.request.stream" not in got
        assert "gen_ai.response.time_to_first_chunk" not in got
    if case.failed:
        assert span.status.code == Status.STATUS_CODE_ERROR
        assert "gen_ai.usage.input_tokens" not in got
        assert "gen_ai.response.model" not in got
    else:
        assert span.status.code == Status.STATUS_CODE_UNSET
        assert "error.type" not in got
    assert {r["service.name"] for r in receiver.resources()} == {"longcat-monitor"}


def test_metrics_are_the_conventions_histograms(
    sim: RunningSimulator, receiver: OtlpReceiver
) -> None:
    body = openai_body(sim)
    stream = openai_stream(sim)
    openai_rate_limited(sim)
    finish()
    metrics = receiver.metrics()

    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    by_type: dict[str, float] = {}
    for point in tokens.histogram.data_points:
        labels = attributes(point.attributes)
        assert labels["gen_ai.provider.name"] == "longcat"
        assert "error.type" not in labels  # the refused call billed nothing: no token point
        by_type[labels["gen_ai.token.type"]] = by_type.get(labels["gen_ai.token.type"], 0) + (
            point.sum
        )
    assert by_type == {
        "input": body["gen_ai.usage.input_tokens"] + stream["gen_ai.usage.input_tokens"],
        "output": body["gen_ai.usage.output_tokens"] + stream["gen_ai.usage.output_tokens"],
    }
    assert list(tokens.histogram.data_points[0].explicit_bounds)[:3] == [1, 4, 16]

    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    counts = {
        attributes(p.attributes).get("error.type"): p.count for p in duration.histogram.data_points
    }
    assert counts == {None: 2, "rate_limit": 1}

    [first_chunk] = metrics["gen_ai.client.operation.time_to_first_chunk"].histogram.data_points
    assert first_chunk.count == 1


def test_a_span_active_in_the_app_is_the_parent(
    sim: RunningSimulator, receiver: OtlpReceiver
) -> None:
    app_tracing = TracerProvider()  # the app's own tracing, exporting elsewhere (or nowhere)
    client = openai_client(sim)
    with app_tracing.get_tracer("app").start_as_current_span("handle request") as app_span:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    finish()
    inside, outside = sorted(receiver.spans(), key=lambda s: s.start_time_unix_nano)
    context = app_span.get_span_context()
    assert int.from_bytes(inside.trace_id) == context.trace_id
    assert int.from_bytes(inside.parent_span_id) == context.span_id
    assert outside.parent_span_id == b""
    assert outside.trace_id != inside.trace_id
    app_tracing.shutdown()


def test_latest_experimental_opt_in_sends_only_the_current_names(
    sim: RunningSimulator, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http,gen_ai_latest_experimental")
    openai_body(sim)
    finish()
    [span] = receiver.spans()
    got = attributes(span.attributes)
    assert got["gen_ai.provider.name"] == "longcat"
    assert "gen_ai.system" not in got


def test_a_full_exporter_drops_and_counts_instead_of_waiting(
    receiver: OtlpReceiver,
    make_call_record: Callable[..., monitor.CallRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    receiver.hold.clear()  # the endpoint takes the first batch and answers nothing yet
    exporter = OtlpExporter(receiver.endpoint, max_queue=4)
    try:
        exporter.export([make_call_record()])
        # Until the SDK's thread is in the export, waiting on the endpoint.
        eventually(lambda: exporter._spans.taken, interval=0.01, what="the first export")
        started = time.perf_counter()
        exporter.export([make_call_record() for _ in range(20)])
        elapsed = time.perf_counter() - started
        stats = exporter.stats()
        assert (stats.queued, stats.dropped) == (5, 16)
        assert elapsed < 1.0
    finally:
        receiver.hold.set()
        assert exporter.shutdown(timeout_s=30)
    assert exporter.stats().exported == 5
    assert len(receiver.spans()) == 5


def test_an_unreachable_endpoint_never_reaches_the_app(
    sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MONITOR_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    get_settings.cache_clear()
    reply = openai_client(sim).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert reply.choices
    assert monitor.flush(timeout=30)
    sink = get_recorder().sink
    finish()
    assert stored_row().status_code == 200
    stats = sink.exporter.stats()  # type: ignore[attr-defined]
    assert (stats.exported, stats.failed) == (0, 1)


def test_with_export_off_the_monitor_imports_no_opentelemetry(sim: RunningSimulator) -> None:
    script = f"""
import sys, httpx, monitor
client = monitor.instrument(httpx.Client(base_url={sim.openai_base_url!r}))
client.post("/chat/completions", json={{"model": "m", "messages": []}},
            headers={{"authorization": "Bearer {KEY}"}})
assert monitor.flush(timeout=30)
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr


def test_spans_left_unsampled_do_not_fill_the_queue(
    receiver: OtlpReceiver, make_call_record: Callable[..., monitor.CallRecord]
) -> None:
    exporter = OtlpExporter(receiver.endpoint, max_queue=4)
    unsampled = (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 0)
    try:
        exporter.export([make_call_record(trace_parent=unsampled) for _ in range(10)])
        exporter.export([make_call_record()])
    finally:
        assert exporter.shutdown(timeout_s=30)
    stats = exporter.stats()
    assert (stats.queued, stats.dropped, stats.exported) == (1, 0, 1)
    assert len(receiver.spans()) == 1
