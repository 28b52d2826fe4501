"""A streamed call gives the same caller bytes and the same record however its bytes are cut,
whether the monitor asked for usage on the caller's behalf or not, ended or cut short."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from capture import drive_stream

from monitor.capture.bodies import request_facts
from monitor.records import CallRecord


def chunk(fields: dict[str, object], null_usage: bool) -> bytes:
    event = {"id": "c1", "model": "LongCat-Flash-Chat", **fields}
    if null_usage:
        event["usage"] = None
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def openai_events(asked_usage: bool, words: int = 40) -> list[bytes]:
    events = [chunk({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, asked_usage)]
    for n in range(words):
        text = "wörld\\n " if n % 7 == 3 else f"word{n} "
        events.append(chunk({"choices": [{"delta": {"content": text}}]}, asked_usage))
    if asked_usage:
        usage = {"prompt_tokens": 11, "completion_tokens": words, "total_tokens": 11 + words}
        events.append(chunk({"choices": [], "usage": usage}, False))
    events.append(b"data: [DONE]\n\n")
    return events


def observe(pieces: list[bytes], strip: bool, end: bool) -> tuple[bytes, CallRecord]:
    body = b'{"model":"LongCat-Flash-Chat","stream":true,"messages":[{"content":"hi"}]}'
    facts, _ = request_facts(body)
    record = CallRecord(started_at=datetime.now(UTC), api="openai", endpoint="/v1/chat/completions")
    out, submitted = drive_stream(record, facts, pieces, strip=strip, end=end)
    assert submitted == [record]
    return out, record


def cuts(stream: bytes, how: str) -> list[bytes]:
    if how == "whole":
        return [stream]
    if how == "events":
        return [event + b"\n\n" for event in stream.split(b"\n\n")[:-1]]
    size = {"bytes7": 7, "bytes100": 100}[how]
    return [stream[i : i + size] for i in range(0, len(stream), size)]


@pytest.mark.parametrize("how", ["whole", "events", "bytes7", "bytes100"])
@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("cut_after", [None, 5, 30])
def test_same_bytes_and_record_however_the_stream_is_cut(
    how: str, strip: bool, cut_after: int | None
) -> None:
    events = openai_events(asked_usage=True)
    sent = events if cut_after is None else events[:cut_after]
    stream = b"".join(sent)
    one_by_one = [observe([event], strip, end=False)[0] for event in sent]
    expected_bytes = b"".join(one_by_one) if strip else stream
    out, record = observe(cuts(stream, how), strip, end=cut_after is None)
    _, reference = observe([stream], strip, end=cut_after is None)
    assert out == expected_bytes
    if strip:
        assert b'"usage":null' not in out and b'"prompt_tokens"' not in out
    fields = ("model", "error_type", "error_code", "input_tokens", "output_tokens", "usage_source")
    assert {f: getattr(record, f) for f in fields} == {f: getattr(reference, f) for f in fields}
    assert record.ttft_ms is not None
    if cut_after is None:
        assert (record.output_tokens, record.usage_source, record.error_type) == (
            40,
            "reported",
            None,
        )
    else:
        assert record.usage_source == "estimated" and record.error_type == "stream_interrupted"


@pytest.mark.parametrize("words", [400, 4000])  # 4,000: more than the text kept uncounted
def test_an_estimate_counts_the_text_of_every_event_read_in_batches(words: int) -> None:
    """A cut stream's estimate counts every content character, also those read after the first
    content, when the monitor reads events in batches."""
    events = openai_events(asked_usage=False, words=words)[:-1]  # cut before [DONE]
    _, batched = observe(events, strip=False, end=False)
    _, whole = observe([b"".join(events)], strip=False, end=False)
    assert batched.output_tokens == whole.output_tokens and batched.output_tokens is not None
    assert batched.output_tokens > words


@pytest.mark.parametrize("how", ["whole", "events", "bytes7"])
@pytest.mark.parametrize("named", [True, False])
@pytest.mark.parametrize("strip", [True, False])
def test_an_in_band_error_after_content_is_recorded_however_the_stream_is_cut(
    how: str, named: bool, strip: bool
) -> None:
    error = b'{"error":{"code":"overloaded","type":"server_error","message":"busy"}}'
    failure = (b"event: error\n" if named else b"") + b"data: " + error + b"\n\n"
    stream = b"".join(openai_events(asked_usage=strip, words=12)[:-2]) + failure
    out, record = observe(cuts(stream, how), strip, end=True)
    assert b"busy" in out
    assert (record.error_type, record.error_code, record.error_message) == (
        "stream_error",
        "overloaded",
        "busy",
    )
    assert record.ttft_ms is not None and record.usage_source == "estimated"
