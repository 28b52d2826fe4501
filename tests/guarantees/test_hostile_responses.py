"""Hostile and broken responses: the caller sees the same thing with and without the wrapper.

The upstream is a stand-in (a MockTransport as the client's *inner* transport); the subject is
the real monitored transport around it. Hypothesis generates bodies: random bytes, JSON and SSE
cut short or garbled, wrong content types, non-UTF-8, compressed (validly or not), delivered in
random chunks, sometimes with the connection dropped part-way.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import types
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import brotli
import httpx
import httpx2
import pytest
import zstandard
from capture import CapturedCalls
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import monitor
from monitor import safety

settings.register_profile(
    "hostile", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

KEY = "sk-hostile-test-000000000000001"
PATHS = ["/openai/v1/chat/completions", "/anthropic/v1/messages", "/v1/other"]


def compress(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "br":
        return bytes(brotli.compress(body))
    if encoding == "zstd":
        return bytes(zstandard.ZstdCompressor().compress(body))
    return body


openai_chunk = st.fixed_dictionaries(
    {
        "id": st.text(max_size=5),
        "choices": st.lists(st.dictionaries(st.text(max_size=3), st.text(max_size=8)), max_size=2),
    },
    optional={
        "usage": st.dictionaries(
            st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens"]),
            st.one_of(st.integers(-5, 10**12), st.text(max_size=3), st.none()),
        ),
        "model": st.text(max_size=10),
    },
)
anthropic_event = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "message_start",
                "message_delta",
                "content_block_delta",
                "error",
                "ping",
                "message_stop",
            ]
        )
    },
    optional={
        "message": st.dictionaries(
            st.sampled_from(["usage", "model"]),
            st.one_of(st.dictionaries(st.text(max_size=20), st.integers()), st.text(max_size=5)),
        ),
        "usage": st.dictionaries(
            st.sampled_from(["output_tokens", "input_tokens"]),
            st.one_of(st.integers(), st.floats(), st.none()),
        ),
    },
)


@st.composite
def sse_body(draw: st.DrawFn) -> bytes:
    events = draw(st.lists(st.one_of(openai_chunk, anthropic_event), max_size=8))
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    out = b""
    for event in events:
        if draw(st.booleans()):
            out += b"event: " + str(event.get("type", "x")).encode() + newline
        out += b"data: " + json.dumps(event).encode() + newline + newline
    if draw(st.booleans()):
        out += b"data: [DONE]" + newline + newline
    if out and draw(st.booleans()):  # cut short
        out = out[: draw(st.integers(0, len(out)))]
    if out and draw(st.booleans()):  # garbled
        at = draw(st.integers(0, len(out) - 1))
        out = out[:at] + draw(st.binary(min_size=1, max_size=4)) + out[at + 1 :]
    return out


bodies = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=9),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=9), inner, max_size=4)
        ),
        max_leaves=12,
    ).map(lambda v: json.dumps({"usage": v, "model": v, "error": v}).encode()),
    sse_body(),
    st.just(b"\xff\xfe\x00garbage\x80\x81"),
)


@st.composite
def responses(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(bodies)
    encoding = draw(st.sampled_from([None, "gzip", "deflate", "br", "zstd", "identity", "bogus"]))
    wire = compress(body, encoding)
    if wire and draw(st.integers(0, 4)) == 0:  # truncated or corrupted compressed data
        wire = wire[: draw(st.integers(0, len(wire) - 1))] + draw(st.binary(max_size=3))
    sizes = draw(st.lists(st.integers(1, 300), max_size=10))
    headers = {}
    content_type = draw(
        st.sampled_from(
            [
                None,
                "application/json",
                "text/event-stream",
                "text/plain",
                "application/octet-stream",
                "text/event-stream; charset=latin-1",
                "garbage/;;",
            ]
        )
    )
    if content_type:
        headers["content-type"] = content_type
    if encoding:
        headers["content-encoding"] = encoding
    return {
        "status": draw(st.sampled_from([200, 200, 400, 401, 404, 429, 500, 529])),
        "headers": headers,
        "wire": wire,
        "sizes": sizes,
        "drop_after": draw(st.none() | st.integers(0, 5)),
        "path": draw(st.sampled_from(PATHS)),
        "stream": draw(st.booleans()),
    }


def make_stream(http: types.ModuleType, spec: dict[str, Any]) -> Any:
    wire, sizes, drop_after = (
        spec["wire"],
        spec["sizes"] or [len(spec["wire"]) or 1],
        spec["drop_after"],
    )

    def chunks() -> Iterator[bytes]:
        at, n = 0, 0
        while at < len(wire):
            if drop_after is not None and n >= drop_after:
                raise http.ReadError("connection reset by peer")
            size = sizes[n % len(sizes)]
            yield wire[at : at + size]
            at += size
            n += 1
        if drop_after is not None and n <= drop_after:
            raise http.RemoteProtocolError("peer closed connection without sending complete body")

    class Stream(http.SyncByteStream):  # type: ignore[misc,name-defined]
        def __iter__(self) -> Iterator[bytes]:
            return chunks()

    return Stream()


def caller_view(client: Any, spec: dict[str, Any]) -> tuple[Any, ...]:
    payload: dict[str, Any] = {
        "model": "LongCat-Flash-Chat",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if spec["stream"]:
        # Asked by the caller, so the wrapper has no usage chunk to add or remove.
        payload.update(stream=True, stream_options={"include_usage": True})
    request = client.build_request(
        "POST", spec["path"], json=payload, headers={"authorization": f"Bearer {KEY}"}
    )
    pieces: list[bytes] = []
    error = None
    status = headers = None
    try:
        response = client.send(request, stream=True)
        status, headers = response.status_code, sorted(response.headers.multi_items())
        try:
            for piece in response.iter_bytes():
                pieces.append(piece)
        finally:
            response.close()
    except Exception as exc:
        error = (type(exc).__module__, type(exc).__name__, str(exc))
    return status, headers, b"".join(pieces), error


def client_pair(http: types.ModuleType, spec: dict[str, Any]) -> tuple[Any, Any, CapturedCalls]:
    def handler(request: Any) -> Any:
        return http.Response(
            spec["status"], headers=spec["headers"], stream=make_stream(http, spec)
        )

    plain = http.Client(base_url="http://upstream.test", transport=http.MockTransport(handler))
    captured = CapturedCalls()
    wrapped = monitor.instrument(
        http.Client(base_url="http://upstream.test", transport=http.MockTransport(handler)),
        recorder=captured,
    )
    return plain, wrapped, captured


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
@settings(settings.get_profile("hostile"))
@given(spec=responses())
def test_the_caller_sees_the_same_thing_and_the_wrapper_never_raises(
    http: types.ModuleType, spec: dict[str, Any]
) -> None:
    plain, wrapped, captured = client_pair(http, spec)
    with plain, wrapped:
        assert caller_view(wrapped, spec) == caller_view(plain, spec)
    assert len(captured.records) <= 1
    if captured.records:
        record = captured.only()
        assert record.key_hint == KEY[-4:]
        assert all(
            isinstance(t, int) and t >= 0
            for t in (record.input_tokens, record.output_tokens, record.total_tokens)
            if t is not None
        )


def peak_while_reading(client: Any, spec: dict[str, Any]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        caller_view_counting(client, spec)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def caller_view_counting(client: Any, spec: dict[str, Any]) -> tuple[Any, ...]:
    """Like ``caller_view`` but keeps only a count of the bytes (the caller streams them)."""
    request = client.build_request(
        "POST",
        spec["path"],
        json={"stream": True, "stream_options": {"include_usage": spec["ask_usage"]}},
        headers={"authorization": f"Bearer {KEY}"},
    )
    total = 0
    response = client.send(request, stream=True)
    try:
        for piece in response.iter_bytes():
            total += len(piece)
    finally:
        response.close()
    return response.status_code, None, total, None


HUGE = 64 * 1024 * 1024
BOMB = 512 * 1024 * 1024


def huge_sse() -> bytes:
    line = b'data: {"choices":[{"delta":{"content":"' + b"x" * 900 + b'"}}]}\n\n'
    return line * (HUGE // len(line))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "make_wire", "headers"),
    [
        ("64 MiB SSE", huge_sse, {"content-type": "text/event-stream"}),
        (
            "64 MiB one JSON line",
            lambda: b'{"x":"' + b"y" * HUGE + b'"}',
            {"content-type": "application/json"},
        ),
        (
            "gzip bomb, 512 MiB of zeros",
            lambda: gzip.compress(b"\0" * BOMB, 9),
            {"content-encoding": "gzip", "content-type": "application/json"},
        ),
        (
            "zstd bomb, 512 MiB of zeros",
            lambda: bytes(zstandard.ZstdCompressor(level=19).compress(b"\0" * BOMB)),
            {"content-encoding": "zstd", "content-type": "text/event-stream"},
        ),
    ],
)
@pytest.mark.parametrize(
    "ask_usage",
    [
        pytest.param(True, id="observed"),
        # Without include_usage the wrapper decodes in the caller's place: piece by piece.
        pytest.param(False, id="rewritten"),
    ],
)
def test_memory_stays_bounded(
    name: str,
    make_wire: Callable[[], bytes],
    headers: dict[str, str],
    ask_usage: bool,
) -> None:
    wire = make_wire()
    spec = {
        "status": 200,
        "headers": headers,
        "wire": wire,
        "sizes": [16 * 1024],
        "drop_after": None,
        "path": "/openai/v1/chat/completions",
        "stream": True,
        "ask_usage": ask_usage,
    }
    plain, wrapped, captured = client_pair(httpx, spec)
    with plain, wrapped:
        without = peak_while_reading(plain, spec)
        with_wrapper = peak_while_reading(wrapped, spec)
    extra = with_wrapper - without
    print(
        f"{name}: peak {without / 1e6:.1f} MB without the wrapper, "
        f"{with_wrapper / 1e6:.1f} MB with it"
    )
    assert extra < 8 * 1024 * 1024
    assert len(captured.records) == 1
    assert safety.failure_counts() == {}
