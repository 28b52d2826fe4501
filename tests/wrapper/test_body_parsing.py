"""Pure parsing: compressed bodies decoded incrementally, usage and error classes from bodies."""

from __future__ import annotations

import gzip
import json
import zlib

import brotli
import pytest
import zstandard

from monitor.capture.bodies import body_facts, classify_status, request_facts, with_stream_usage
from monitor.capture.decoding import DecodeError, decoder_for

BODY = json.dumps(
    {
        "model": "LongCat-Flash-Chat",
        "choices": [{"message": {"content": "hi " * 2000}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2000, "total_tokens": 2012},
    }
).encode()

COMPRESSORS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": lambda data: brotli.compress(data, quality=5),
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
def test_compressed_bodies_decode_in_pieces_at_any_split(encoding: str) -> None:
    wire = COMPRESSORS[encoding](BODY)
    for step in (1, 7, 64, len(wire)):
        decoder = decoder_for(encoding, piece_limit=512)
        pieces = []
        for start in range(0, len(wire), step):
            pieces.extend(decoder.feed(wire[start : start + step]))
        pieces.extend(decoder.finish())
        assert b"".join(pieces) == BODY


def test_raw_deflate_and_stacked_encodings() -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    wire = raw.compress(BODY) + raw.flush()
    assert b"".join(decoder_for("deflate").feed(wire)) == BODY
    stacked = brotli.compress(gzip.compress(BODY))  # gzip applied first, then br
    decoder = decoder_for("gzip, br")
    assert b"".join([*decoder.feed(stacked), *decoder.finish()]) == BODY


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
def test_a_compression_bomb_comes_out_in_bounded_pieces(encoding: str) -> None:
    size = 60_000_000
    wire = COMPRESSORS[encoding](b"\0" * size)
    decoder = decoder_for(encoding, piece_limit=1 << 20)
    total = largest = 0
    for piece in decoder.feed(wire):
        largest = max(largest, len(piece))
        total += len(piece)
    total += sum(len(p) for p in decoder.finish())
    assert total == size
    assert largest <= 8 << 20  # never the whole 60 MB at once


def test_bad_encodings_raise_our_decode_error() -> None:
    with pytest.raises(DecodeError):
        decoder_for("compress")
    with pytest.raises(DecodeError):
        list(decoder_for("gzip").feed(b"not gzip at all"))


def test_openai_body_usage_and_model() -> None:
    facts = body_facts("openai", 200, BODY)
    assert facts.model == "LongCat-Flash-Chat"
    assert facts.usage is not None
    assert (facts.usage.input_tokens, facts.usage.output_tokens, facts.usage.total_tokens) == (
        12,
        2000,
        2012,
    )
    assert facts.usage.source == "reported" and facts.error is None


def test_a_model_name_that_is_not_utf8_keeps_the_usage() -> None:
    # The usage is what the quota needs; a model name the upstream garbled must not cost it.
    body = BODY.replace(b"LongCat-Flash-Chat", b"LongCat-\xff\xfe")
    facts = body_facts("openai", 200, body)
    assert facts.usage is not None and facts.usage.total_tokens == 2012
    assert facts.model == "LongCat-\ufffd\ufffd"


def test_anthropic_body_counts_cache_tokens_as_input() -> None:
    body = json.dumps(
        {
            "type": "message",
            "model": "LongCat-2.0",
            "usage": {
                "input_tokens": 100,
                "output_tokens": 50,
                "cache_read_input_tokens": 30,
                "cache_creation_input_tokens": 5,
            },
        }
    ).encode()
    usage = body_facts("anthropic", 200, body).usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (100, 50)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (30, 5)
    assert usage.total_tokens == 185


@pytest.mark.parametrize("bad", [-1, -5, 2**29, 2**31, 10**12, True, "12", 1.5])
def test_a_count_that_cannot_be_one_is_not_recorded(bad: object) -> None:
    """Negative, fractional or non-numeric counts, or counts whose total could overflow the
    database's 32-bit columns, are taken as unknown (Postgres stored 10**12 as -727,379,968)."""
    openai_body = json.dumps(
        {"usage": {"prompt_tokens": 12, "completion_tokens": bad, "total_tokens": bad}}
    ).encode()
    usage = body_facts("openai", 200, openai_body).usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (12, None)
    assert usage.total_tokens in (None, 12)
    tail = b'"usage":{"output_tokens":' + json.dumps(bad).encode() + b"}"  # no JSON around it
    assert body_facts("openai", 200, tail).usage is None
    anthropic_body = json.dumps(
        {"usage": {"input_tokens": 100, "output_tokens": 50, "cache_read_input_tokens": bad}}
    ).encode()
    usage = body_facts("anthropic", 200, anthropic_body).usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (100, 50, None)
    assert usage.total_tokens == 150
    most = {"input_tokens": 2**29 - 1, "output_tokens": 2**29 - 1}
    most |= {"cache_read_input_tokens": 2**29 - 1, "cache_creation_input_tokens": 2**29 - 1}
    usage = body_facts("anthropic", 200, json.dumps({"usage": most}).encode()).usage
    assert usage is not None and usage.total_tokens == 2**31 - 4  # still fits the column


def test_usage_found_in_the_tail_of_a_truncated_body() -> None:
    tail = BODY[-300:]
    usage = body_facts("openai", 200, tail, truncated=True).usage
    assert usage is not None and usage.total_tokens == 2012


LONGCAT_429 = {
    "error": {
        "message": "Rate limit exceeded",
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
        "retry_after": 60,
    }
}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": {"type": "authentication_error", "message": "bad key"}}, "auth"),
        (403, None, "permission"),
        (429, LONGCAT_429, "rate_limit"),
        (400, {"error": {"code": "context_length_exceeded", "message": "too long"}}, None),
        (400, {"error": {"message": "This model's maximum context length is 8192"}}, None),
        (400, {"error": {"type": "invalid_request_error", "message": "bad"}}, "bad_request"),
        (422, None, "bad_request"),
        (404, None, "not_found"),
        (500, None, "server_error"),
        (503, None, "server_error"),
        (529, {"type": "error", "error": {"type": "overloaded_error"}}, "overloaded"),
        (408, None, "timeout"),
    ],
)
def test_error_classes(status: int, body: object, expected: str | None) -> None:
    info = classify_status(status, body)
    assert info is not None
    assert info.error_type == (expected or "context_length_exceeded")


def test_rate_limit_keeps_retry_after_and_code() -> None:
    info = classify_status(429, LONGCAT_429)
    assert info is not None
    assert (info.code, info.retry_after_s) == ("rate_limit_exceeded", 60.0)
    from_header = classify_status(429, None, retry_after_header="17")
    assert from_header is not None and from_header.retry_after_s == 17.0
    assert classify_status(200, LONGCAT_429) is None


def test_request_rewrite_asks_for_usage_and_keeps_other_options() -> None:
    body = json.dumps(
        {"model": "m", "stream": True, "stream_options": {"x": 1}, "messages": [{"content": "hé"}]}
    ).encode()
    facts, parsed = request_facts(body)
    assert facts.stream and not facts.wants_stream_usage and facts.model == "m"
    assert facts.prompt_size() == (2, 1)
    assert parsed is not None
    rewritten = json.loads(with_stream_usage(body, parsed))
    assert rewritten["stream_options"] == {"x": 1, "include_usage": True}
    assert rewritten["messages"] == [{"content": "hé"}]
    plain = b'{"model": "m", "stream": true, "messages": []}'
    facts, parsed = request_facts(plain)
    assert parsed is not None
    added = with_stream_usage(plain, parsed)
    assert (
        added
        == b'{"stream_options":{"include_usage":true},"model": "m", "stream": true, "messages": []}'
    )
    assert json.loads(added) == {**parsed, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (402, {"type": "insufficient_quota", "code": "insufficient_quota"}, "quota_exhausted"),
        (402, None, "quota_exhausted"),
        (403, {"type": "permission_error", "code": "insufficient_quota"}, "quota_exhausted"),
        (403, {"type": "permission_error", "code": "permission_denied"}, "permission"),
        (429, {"type": "rate_limit_error", "code": "rate_limit_exceeded"}, "rate_limit"),
        (503, {"type": "server_error", "code": "service_unavailable"}, "server_error"),
        (502, {"type": "server_error", "code": "bad_gateway"}, "server_error"),
    ],
)
def test_quota_refusals_stand_apart_from_permission_and_rate_limits(
    status: int, error: dict[str, str] | None, expected: str
) -> None:
    info = classify_status(status, {"error": {"message": "m", **error}} if error else None)
    assert info is not None and info.error_type == expected
    if error:
        assert info.code == error["code"]


def test_a_responses_api_body_gives_every_usage_field() -> None:
    body = json.dumps(
        {
            "id": "resp_1",
            "object": "response",
            "model": "LongCat-2.0",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi"}]}],
            "usage": {
                "input_tokens": 9,
                "input_tokens_details": {"cached_tokens": 4},
                "output_tokens": 7,
                "output_tokens_details": {"reasoning_tokens": 5},
                "total_tokens": 16,
            },
        }
    ).encode()
    usage = body_facts("openai", 200, body).usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (9, 7, 16)
    assert (usage.cache_read_tokens, usage.reasoning_tokens, usage.source) == (4, 5, "reported")
