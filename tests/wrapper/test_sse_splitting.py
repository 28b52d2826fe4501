"""The SSE splitter and stream readers see the same events however the bytes are cut."""

from __future__ import annotations

import json

import pytest

from monitor.capture.sse import SSESplitter
from monitor.capture.streams import AnthropicStreamReader, OpenAIStreamReader, reader_for


def openai_stream(with_usage: bool, newline: bytes = b"\n") -> bytes:
    chunks = [
        {"id": "c1", "model": "LongCat-Flash-Chat", "choices": [{"delta": {"role": "assistant"}}]},
        {"id": "c1", "model": "LongCat-Flash-Chat", "choices": [{"delta": {"content": "Hello "}}]},
        {"id": "c1", "model": "LongCat-Flash-Chat", "choices": [{"delta": {"content": "wörld"}}]},
        {"id": "c1", "choices": [{"delta": {}, "finish_reason": "stop"}]},
    ]
    if with_usage:
        chunks.append(
            {
                "id": "c1",
                "choices": [],
                "usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": 7,
                    "total_tokens": 18,
                    "prompt_tokens_details": {"cached_tokens": 3},
                    "completion_tokens_details": {"reasoning_tokens": 2},
                },
            }
        )
    events = [b"data: " + json.dumps(c).encode() for c in chunks] + [b"data: [DONE]"]
    return b"".join(e + newline + newline for e in events)


def anthropic_stream(newline: bytes = b"\n") -> bytes:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "model": "LongCat-2.0",
                    "usage": {"input_tokens": 20, "cache_read_input_tokens": 5, "output_tokens": 1},
                },
            },
        ),
        ("content_block_start", {"type": "content_block_start", "index": 0}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"text": "Hi there"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 9}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    out = b""
    for name, data in events:
        out += b"event: " + name.encode() + newline + b"data: " + json.dumps(data).encode()
        out += newline + newline
    return out


def read_all(api: str, pieces: list[bytes], drop: bool = False) -> tuple[object, bytes]:
    splitter = SSESplitter()
    reader = reader_for(api)
    kept = b""
    for event in [e for piece in pieces for e in splitter.feed(piece)] + splitter.finish():
        if not reader.consume(event, drop):
            kept += event.raw
    return reader, kept


def every_split(data: bytes) -> list[list[bytes]]:
    cuts = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    cuts.append([data[i : i + 1] for i in range(len(data))])  # one byte at a time
    return cuts


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_openai_usage_found_at_every_split(newline: bytes) -> None:
    data = openai_stream(with_usage=True, newline=newline)
    for pieces in every_split(data):
        reader, kept = read_all("openai", pieces)
        assert isinstance(reader, OpenAIStreamReader)
        assert kept == data
        assert reader.ended
        assert reader.model == "LongCat-Flash-Chat"
        assert reader.usage is not None
        assert (reader.usage.input_tokens, reader.usage.output_tokens) == (11, 7)
        assert reader.usage.total_tokens == 18
        assert reader.usage.cache_read_tokens == 3
        assert reader.usage.reasoning_tokens == 2
        assert reader.output_chars == len("Hello wörld")


def test_dropping_the_usage_chunk_leaves_the_stream_as_it_was_without_it() -> None:
    asked = openai_stream(with_usage=True)
    not_asked = openai_stream(with_usage=False)
    for pieces in every_split(asked):
        reader, kept = read_all("openai", pieces, drop=True)
        assert kept == not_asked
        assert reader.usage is not None and reader.usage.total_tokens == 18  # type: ignore[attr-defined]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_anthropic_usage_found_at_every_split(newline: bytes) -> None:
    data = anthropic_stream(newline)
    for pieces in every_split(data):
        reader, kept = read_all("anthropic", pieces)
        assert isinstance(reader, AnthropicStreamReader)
        assert kept == data
        assert reader.ended and reader.usage_final
        assert reader.model == "LongCat-2.0"
        assert reader.usage is not None
        assert reader.usage.input_tokens == 20
        assert reader.usage.cache_read_tokens == 5
        assert reader.usage.output_tokens == 9  # the last message_delta, not message_start's 1
        assert reader.usage.total_tokens == 34


def test_in_band_errors_are_stream_errors() -> None:
    anthropic_error = (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )
    reader, _ = read_all("anthropic", [anthropic_error])
    assert reader.error is not None  # type: ignore[attr-defined]
    assert reader.error.error_type == "stream_error"  # type: ignore[attr-defined]
    assert reader.error.code == "overloaded_error"  # type: ignore[attr-defined]
    openai_error = b'data: {"error":{"message":"boom","type":"server_error","code":"x"}}\n\n'
    reader, _ = read_all("openai", [openai_error])
    assert reader.error is not None and reader.error.code == "x"  # type: ignore[attr-defined]


def test_an_oversized_event_passes_through_unparsed_and_bounded() -> None:
    big = b"data: " + b"x" * 5000 + b"\n\n" + b"data: [DONE]\n\n"
    splitter = SSESplitter(max_event_bytes=1024)
    out = b""
    parsed = []
    for i in range(0, len(big), 100):
        for event in splitter.feed(big[i : i + 100]):
            out += event.raw
            parsed.append(event.data)
            assert len(event.raw) <= 1024 + 100
    assert out == big
    assert parsed[-1] == b"[DONE]"


def test_an_unterminated_tail_is_returned_raw() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: 1\n\ndata: 2")[0].data == b"1"
    (tail,) = splitter.finish()
    assert tail.raw == b"data: 2" and tail.data is None
