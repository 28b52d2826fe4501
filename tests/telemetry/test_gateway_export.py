"""OTLP export of calls through the gateway, against a real receiver: the SDKs call a real
gateway (its default recorder exporting, as ``longcat-monitor gateway`` runs it) in front of the
simulator, or in front of a loopback server that keeps the headers it gets.

A request's valid W3C ``traceparent`` makes its span a child of the caller's span; an invalid or
repeated one is ignored, never refused; either way the header goes upstream as it came.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from http_receiver import Receiver, running_receiver
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otlp_receiver import OtlpReceiver, attributes, finish

from monitor.capture.fingerprint import key_id
from monitor.config import load_settings
from monitor.gateway import RunningGateway
from monitor.simulator import RunningSimulator

KEY = "sk-longcat-test-0123456789abcdef-WXYZ"
MODEL = "LongCat-Flash-Chat"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
PARENT = f"00-{TRACE}-{SPAN}-01"


@pytest.fixture
def upstream() -> Iterator[Receiver]:
    """A plain upstream answering 200 to every call, keeping each request's headers."""
    with running_receiver() as running:
        yield running


def post(gateway: RunningGateway, headers: list[tuple[str, str]]) -> httpx2.Response:
    with httpx2.Client() as client:
        return client.post(
            gateway.openai_base_url + "/chat/completions",
            json={"model": MODEL, "messages": MESSAGES},
            headers=[("authorization", f"Bearer {KEY}"), *headers],
        )


def test_calls_through_the_gateway_are_genai_spans(
    sim: RunningSimulator, receiver: OtlpReceiver
) -> None:
    with (
        RunningGateway(load_settings(upstream_url=sim.base_url)) as gateway,
        openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0) as oai,
        anthropic.Anthropic(base_url=gateway.anthropic_base_url, api_key=KEY, max_retries=0) as ant,
    ):
        reply = oai.chat.completions.create(model=MODEL, messages=MESSAGES)
        with ant.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
            message = stream.get_final_message()
    finish()
    chat, streamed = sorted(receiver.spans(), key=lambda s: s.start_time_unix_nano)
    assert reply.usage is not None
    expected: list[dict[str, Any]] = [
        {
            "longcat.api": "openai",
            "gen_ai.response.model": reply.model,
            "gen_ai.usage.input_tokens": reply.usage.prompt_tokens,
            "gen_ai.usage.output_tokens": reply.usage.completion_tokens,
        },
        {
            "longcat.api": "anthropic",
            "gen_ai.request.stream": True,
            "gen_ai.usage.input_tokens": message.usage.input_tokens,
            "gen_ai.usage.output_tokens": message.usage.output_tokens,
        },
    ]
    for span, wanted in zip((chat, streamed), expected, strict=True):
        got = attributes(span.attributes)
        assert span.name == f"chat {MODEL}"
        assert span.kind == Span.SPAN_KIND_CLIENT
        assert {name: got.get(name) for name in wanted} == wanted
        assert got["gen_ai.operation.name"] == "chat"
        assert got["gen_ai.provider.name"] == "longcat"
        assert got["gen_ai.request.model"] == MODEL
        assert got["http.response.status_code"] == 200
        assert got["longcat.source"] == "gateway"
        assert got["longcat.key.id"] == key_id(KEY)
        assert span.parent_span_id == b""  # no traceparent: a trace of its own
    assert chat.trace_id != streamed.trace_id


def test_a_valid_traceparent_makes_the_span_a_child_of_the_callers_span(
    upstream: Receiver, receiver: OtlpReceiver
) -> None:
    later_version = f"01-{'a' * 32}-{'b' * 16}-03-more-fields"
    with RunningGateway(load_settings(upstream_url=upstream.url("http", ""))) as gateway:
        for value in (PARENT, later_version):
            assert post(gateway, [("traceparent", value)]).status_code == 200
    finish()
    spans = sorted(receiver.spans(), key=lambda s: s.start_time_unix_nano)
    assert [(s.trace_id.hex(), s.parent_span_id.hex()) for s in spans] == [
        (TRACE, SPAN),
        ("a" * 32, "b" * 16),
    ]
    assert [r.headers["traceparent"] for r in upstream.received] == [PARENT, later_version]


def test_a_traceparent_not_sampled_leaves_the_call_out_of_the_trace(
    sim: RunningSimulator, receiver: OtlpReceiver
) -> None:
    with RunningGateway(load_settings(upstream_url=sim.base_url)) as gateway:
        assert post(gateway, [("traceparent", f"00-{TRACE}-{SPAN}-00")]).status_code == 200
        assert post(gateway, []).status_code == 200
    finish()
    [span] = receiver.spans()  # the caller chose not to record its trace: the first is not sent
    assert span.parent_span_id == b""
    [durations] = receiver.metrics()["gen_ai.client.operation.duration"].histogram.data_points
    assert durations.count == 2  # its metrics are recorded all the same


INVALID = {
    "not a traceparent": "hello",
    "upper-case hex": PARENT.upper(),
    "version ff": f"ff-{TRACE}-{SPAN}-01",
    "zero trace id": f"00-{'0' * 32}-{SPAN}-01",
    "zero parent id": f"00-{TRACE}-{'0' * 16}-01",
    "version 00 with more fields": f"{PARENT}-extra",
    "short": PARENT[:-1],
}


@pytest.mark.parametrize("value", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_traceparent_is_ignored_and_forwarded_unchanged(
    upstream: Receiver, receiver: OtlpReceiver, value: str
) -> None:
    with RunningGateway(load_settings(upstream_url=upstream.url("http", ""))) as gateway:
        assert post(gateway, [("traceparent", value)]).status_code == 200
    finish()
    [span] = receiver.spans()
    assert span.parent_span_id == b""
    assert span.trace_id.hex() != TRACE
    assert [r.headers["traceparent"] for r in upstream.received] == [value]


def test_a_repeated_traceparent_is_ignored(upstream: Receiver, receiver: OtlpReceiver) -> None:
    other = f"00-{'c' * 32}-{'d' * 16}-01"
    with RunningGateway(load_settings(upstream_url=upstream.url("http", ""))) as gateway:
        assert post(gateway, [("traceparent", PARENT), ("traceparent", other)]).status_code == 200
    finish()
    [span] = receiver.spans()
    assert span.parent_span_id == b""
    assert span.trace_id.hex() not in (TRACE, "c" * 32)
