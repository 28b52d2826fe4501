"""The Responses API stream read by the observer: success ends with ``response.completed`` and
no ``[DONE]``; failure events are stream errors with their reason; a cut is an interruption with
an estimate; the first output delta of any kind is the first token. However the bytes are cut."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from capture import drive_stream

from monitor.capture.bodies import request_facts
from monitor.capture.observer import CallObserver
from monitor.records import CallRecord

USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"cached_tokens": 32},
    "output_tokens": 30,
    "output_tokens_details": {"reasoning_tokens": 12},
    "total_tokens": 80,
}


def event(kind: str, named: bool = True, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, **fields}, separators=(",", ":"))
    return (f"event: {kind}\n" if named else "").encode() + f"data: {data}\n\n".encode()


def response(status: str, **fields: Any) -> dict[str, Any]:
    base = {"id": "resp_1", "object": "response", "status": status, "model": "LongCat-2.0"}
    return {**base, **fields}


def events(end: str = "response.completed", named: bool = True, first: str = "text") -> list[bytes]:
    out = [event("response.created", named, response=response("in_progress", usage=None))]
    if first == "reasoning":
        out.append(event("response.reasoning_text.delta", named, delta="Thinking it over"))
    elif first == "tool":
        out.append(event("response.function_call_arguments.delta", named, delta='{"city":'))
    for n in range(12):
        out.append(event("response.output_text.delta", named, delta=f"word{n} "))
    if end == "response.completed":
        out.append(event(end, named, response=response("completed", usage=USAGE)))
    elif end == "response.failed":
        error = {"code": "server_error", "message": "The model failed."}
        out.append(event(end, named, response=response("failed", error=error, usage=None)))
    elif end == "response.incomplete":
        details = {"reason": "max_output_tokens"}
        body = response("incomplete", incomplete_details=details, usage=USAGE)
        out.append(event(end, named, response=body))
    elif end == "error":
        out.append(event("error", named, code="rate_limit_exceeded", message="Slow down."))
    return out


def observe(pieces: list[bytes], *, end: bool = True) -> tuple[bytes, CallRecord]:
    body = b'{"model":"LongCat-2.0","stream":true,"input":"Say hello to the team"}'
    facts, _ = request_facts(body)
    record = CallRecord(started_at=datetime.now(UTC), api="openai", endpoint="/openai/v1/responses")
    out, submitted = drive_stream(record, facts, pieces, strip=False, end=end)
    assert submitted == [record]
    return out, record


def cuts(stream: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [stream]
    if how == "events":
        return [piece + b"\n\n" for piece in stream.split(b"\n\n")[:-1]]
    size = int(how.removeprefix("bytes"))
    return [stream[i : i + size] for i in range(0, len(stream), size)]


HOW = ["whole", "events", "bytes7", "bytes100"]


@pytest.mark.parametrize("named", [True, False], ids=["event lines", "data only"])
@pytest.mark.parametrize("how", HOW)
def test_completed_without_done_is_a_success_with_every_usage_field(how: str, named: bool) -> None:
    stream = b"".join(events(named=named))
    out, record = observe(cuts(stream, how))
    assert out == stream and b"[DONE]" not in out
    assert record.error_type is None and record.usage_source == "reported"
    assert record.model == "LongCat-2.0"
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (50, 30, 80)
    assert (record.cache_read_tokens, record.reasoning_tokens) == (32, 12)
    assert record.ttft_ms is not None


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    ("end", "code", "usage_source"),
    [
        ("response.failed", "server_error", "estimated"),
        ("response.incomplete", "max_output_tokens", "reported"),
        ("error", "rate_limit_exceeded", "estimated"),
    ],
)
def test_failure_events_are_stream_errors_with_their_reason(
    how: str, end: str, code: str, usage_source: str
) -> None:
    stream = b"".join(events(end))
    _, record = observe(cuts(stream, how))
    assert (record.error_type, record.error_code) == ("stream_error", code)
    assert record.error_message
    assert record.usage_source == usage_source
    assert record.output_tokens is not None and record.output_tokens > 0


@pytest.mark.parametrize("how", HOW)
def test_a_cut_before_completed_is_interrupted_with_an_estimate(how: str) -> None:
    stream = b"".join(events(end="none"))
    _, record = observe(cuts(stream, how), end=False)
    assert record.error_type == "stream_interrupted"
    assert record.usage_source == "estimated"
    assert record.output_tokens is not None and record.output_tokens >= 12
    assert record.input_tokens is not None and record.input_tokens > 0


def test_a_body_that_ends_before_completed_is_interrupted_too() -> None:
    _, record = observe(events(end="none"), end=True)
    assert (record.error_type, record.error_code) == ("stream_interrupted", "no_end_marker")


@pytest.mark.parametrize("first", ["reasoning", "tool"])
def test_ttft_counts_reasoning_and_tool_call_deltas(first: str) -> None:
    clock = iter(range(100))

    def tick() -> float:
        return next(clock) / 1000

    body = b'{"model":"LongCat-2.0","stream":true,"input":"hi"}'
    facts, _ = request_facts(body)
    record = CallRecord(started_at=datetime.now(UTC), api="openai", endpoint="/openai/v1/responses")
    observer = CallObserver(record, facts, lambda r: None, clock=tick)
    observer.on_response(200, {"content-type": "text/event-stream"})
    stream = events(first=first)
    observer.on_chunk(stream[0])  # response.created: no output yet
    assert record.ttft_ms is None
    observer.on_chunk(stream[1])  # the reasoning or tool-call delta
    assert record.ttft_ms is not None
