"""The real openai and anthropic SDKs, instrumented, against the project's LongCat simulator.

Each test checks the recorded row field by field against what the SDK itself returned.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from capture import CapturedCalls
from sdk_http import cut_stream_errors, http_module

import monitor
from monitor.capture.fingerprint import key_id
from monitor.simulator import RunningSimulator

KEY = "sk-longcat-test-0123456789abcdef-WXYZ"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]
FAST_RETRY = {"x-simulate-retry-after-ms": "1"}


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every client a test made, so no socket is left for the garbage collector."""
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()


OPEN_CLIENTS: list[Any] = []


def openai_client(sim: RunningSimulator, captured: CapturedCalls, **kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key=KEY, **kw)
    OPEN_CLIENTS.append(client)
    return monitor.instrument(client, recorder=captured)


def anthropic_client(
    sim: RunningSimulator, captured: CapturedCalls, **kw: Any
) -> anthropic.Anthropic:
    kw.setdefault("max_retries", 0)
    client = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key=KEY, **kw)
    OPEN_CLIENTS.append(client)
    return monitor.instrument(client, recorder=captured)


def assert_common(record: monitor.CallRecord, api: str, stream: bool) -> None:
    assert record.api == api
    assert record.stream is stream
    assert record.key_id == key_id(KEY)
    assert record.key_hint == "WXYZ"
    assert record.started_at.tzinfo is not None
    assert record.latency_ms is not None and record.latency_ms > 0
    assert record.attempt == 0
    assert KEY not in repr(record)


def test_openai_non_stream_row(sim: RunningSimulator, captured: CapturedCalls) -> None:
    client = openai_client(sim, captured)
    with monitor.tags(feature="summarise", user="alice"):
        raw = client.chat.completions.with_raw_response.create(
            model="LongCat-Flash-Chat", messages=MESSAGES
        )
    completion = raw.parse()
    record = captured.only()
    assert_common(record, "openai", stream=False)
    assert record.endpoint == "/openai/v1/chat/completions"
    assert record.model == "LongCat-Flash-Chat"
    assert record.status_code == 200 and record.error_type is None
    assert completion.usage is not None
    assert record.input_tokens == completion.usage.prompt_tokens
    assert record.output_tokens == completion.usage.completion_tokens
    assert record.total_tokens == completion.usage.total_tokens
    assert record.usage_source == "reported"
    assert record.ttft_ms is None
    assert record.request_id == raw.headers["x-request-id"]
    assert record.labels == {"feature": "summarise", "user": "alice"}


def test_openai_stream_without_include_usage_is_counted_and_unchanged_for_the_caller(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    client = openai_client(sim, captured)
    chunks = list(
        client.chat.completions.create(
            model="LongCat-Flash-Thinking", messages=MESSAGES, stream=True
        )
    )
    assert chunks and all(chunk.choices for chunk in chunks)  # no usage-only chunk leaked
    assert all(chunk.usage is None for chunk in chunks)
    record = captured.only()
    assert_common(record, "openai", stream=True)
    assert record.status_code == 200 and record.error_type is None
    assert record.usage_source == "reported"
    assert record.input_tokens and record.output_tokens
    assert record.total_tokens == record.input_tokens + record.output_tokens
    assert record.reasoning_tokens is not None and record.reasoning_tokens > 0
    assert record.ttft_ms is not None and 0 < record.ttft_ms <= record.latency_ms  # type: ignore[operator]


def test_openai_stream_with_include_usage_keeps_the_callers_usage_chunk(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    client = openai_client(sim, captured)
    chunks = list(
        client.chat.completions.create(
            model="LongCat-Flash-Chat",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-simulate-cached-tokens": "12"},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    record = captured.only()
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
    )
    assert record.cache_read_tokens == 12


def streamed_text(client: openai.OpenAI, encoding: str) -> str | Exception:
    """The text of a streamed chat completion sent in ``encoding``, or what the SDK raised."""
    try:
        stream = client.chat.completions.create(
            model="LongCat-Flash-Chat",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-simulate-compress": encoding},
        )
        return "".join(c.choices[0].delta.content or "" for c in stream)
    except Exception as exc:
        return exc


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "zstd"])
def test_compressed_streams_are_decoded_before_parsing(
    sim: RunningSimulator, captured: CapturedCalls, encoding: str
) -> None:
    text = streamed_text(openai_client(sim, captured), encoding)
    if encoding not in http_module(openai)._decoders.SUPPORTED_DECODERS:
        # httpx2 (openai 3.x) decodes zstd only with its zstd extra: without it the SDK gets the
        # body as it came and fails on it, with the wrapper as without (test_caller_view)
        plain = openai.OpenAI(base_url=sim.openai_base_url, api_key=KEY, max_retries=0)
        OPEN_CLIENTS.append(plain)
        failure = streamed_text(plain, encoding)
        assert isinstance(failure, Exception) and type(text) is type(failure)
        assert captured.only().status_code == 200
        return
    assert isinstance(text, str) and text
    record = captured.only()
    assert record.usage_source == "reported" and record.error_type is None
    assert record.output_tokens is not None and record.output_tokens > 0


def test_a_server_that_never_sends_usage_gets_an_estimate(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    client = openai_client(sim, captured)
    stream = client.chat.completions.create(
        model="LongCat-Flash-Chat",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-simulate-fault": "no_usage"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    record = captured.only()
    assert record.usage_source == "estimated" and record.error_type is None
    assert record.output_tokens is not None
    assert len(text) / 8 <= record.output_tokens <= len(text)
    assert record.input_tokens is not None and record.input_tokens > 0


def test_anthropic_non_stream_and_stream_rows(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    client = anthropic_client(sim, captured)
    message = client.messages.create(model="LongCat-2.0", max_tokens=200, messages=MESSAGES)
    with client.messages.stream(
        model="LongCat-Flash-Chat",
        max_tokens=200,
        messages=MESSAGES,
        extra_headers={"x-simulate-cached-tokens": "40"},
    ) as stream:
        for _ in stream.text_stream:
            pass
        final = stream.get_final_message()
    plain, streamed = captured.records
    assert_common(plain, "anthropic", stream=False)
    assert plain.endpoint == "/anthropic/v1/messages" and plain.model == "LongCat-2.0"
    assert (plain.input_tokens, plain.output_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert_common(streamed, "anthropic", stream=True)
    assert streamed.error_type is None and streamed.usage_source == "reported"
    assert streamed.input_tokens == final.usage.input_tokens
    assert streamed.output_tokens == final.usage.output_tokens  # message_delta, not message_start
    assert streamed.cache_read_tokens == 40
    assert streamed.total_tokens == final.usage.input_tokens + final.usage.output_tokens + 40
    assert streamed.ttft_ms is not None


OPENAI_FAULTS = [
    ("auth", openai.AuthenticationError, "auth", 401),
    ("permission", openai.PermissionDeniedError, "permission", 403),
    ("rate_limit", openai.RateLimitError, "rate_limit", 429),
    ("bad_request", openai.BadRequestError, "bad_request", 400),
    ("context_length", openai.BadRequestError, "context_length_exceeded", 400),
    ("not_found", openai.NotFoundError, "not_found", 404),
    ("server_error", openai.InternalServerError, "server_error", 500),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("fault", "exc_type", "error_type", "status"), OPENAI_FAULTS)
def test_openai_error_classes(
    sim: RunningSimulator,
    captured: CapturedCalls,
    fault: str,
    exc_type: type[Exception],
    error_type: str,
    status: int,
    stream: bool,
) -> None:
    client = openai_client(sim, captured)
    with pytest.raises(exc_type):
        client.chat.completions.create(
            model="LongCat-Flash-Chat",
            messages=MESSAGES,
            stream=stream,
            extra_headers={"x-simulate-fault": fault},
        )
    record = captured.only()
    assert (record.status_code, record.error_type) == (status, error_type)
    assert record.input_tokens is None and record.usage_source == "none"
    assert record.request_id
    if fault == "rate_limit":
        assert record.retry_after_s == 60.0
        assert record.error_code == "rate_limit_exceeded"


ANTHROPIC_FAULTS = [
    ("auth", anthropic.AuthenticationError, "auth", 401),
    ("rate_limit", anthropic.RateLimitError, "rate_limit", 429),
    ("context_length", anthropic.BadRequestError, "context_length_exceeded", 400),
    ("server_error", anthropic.InternalServerError, "server_error", 500),
    ("overloaded", anthropic.APIStatusError, "overloaded", 529),
]


@pytest.mark.parametrize(("fault", "exc_type", "error_type", "status"), ANTHROPIC_FAULTS)
def test_anthropic_error_classes(
    sim: RunningSimulator,
    captured: CapturedCalls,
    fault: str,
    exc_type: type[Exception],
    error_type: str,
    status: int,
) -> None:
    client = anthropic_client(sim, captured)
    with pytest.raises(exc_type):
        client.messages.create(
            model="LongCat-Flash-Chat",
            max_tokens=50,
            messages=MESSAGES,
            extra_headers={"x-simulate-fault": fault},
        )
    record = captured.only()
    assert (record.status_code, record.error_type) == (status, error_type)
    assert record.request_id


def test_a_stream_cut_midway_is_interrupted_with_the_tokens_seen(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    client = openai_client(sim, captured)
    stream = client.chat.completions.create(
        model="LongCat-Flash-Chat",
        messages=MESSAGES,
        stream=True,
        extra_headers={"x-simulate-fault": "cut_stream"},
    )
    seen = ""
    with pytest.raises(cut_stream_errors(openai)):
        for chunk in stream:
            seen += chunk.choices[0].delta.content or ""
    record = captured.only()
    assert record.status_code == 200
    assert record.error_type == "stream_interrupted"
    assert seen and record.output_tokens is not None and record.output_tokens > 0
    assert record.usage_source == "estimated"


def test_an_anthropic_stream_cut_midway_is_interrupted_with_the_tokens_seen(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    # Whichever error the SDK version raises for the cut (the transport's own, or from anthropic
    # 2.17 on an APIConnectionError around it), the record is the same.
    client = anthropic_client(sim, captured)
    seen = ""
    with (
        pytest.raises(cut_stream_errors(anthropic)),
        client.messages.stream(
            model="LongCat-2.0",
            max_tokens=200,
            messages=MESSAGES,
            extra_headers={"x-simulate-fault": "cut_stream"},
        ) as stream,
    ):
        for text in stream.text_stream:
            seen += text
    record = captured.only()
    assert record.status_code == 200
    assert record.error_type == "stream_interrupted"
    assert seen and record.output_tokens is not None and record.output_tokens > 0
    assert record.input_tokens is not None and record.input_tokens > 0
    assert record.usage_source == "estimated"


def test_an_in_band_error_event_is_a_stream_error(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    client = anthropic_client(sim, captured)
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="LongCat-Flash-Chat",
            max_tokens=200,
            messages=MESSAGES,
            extra_headers={"x-simulate-fault": "stream_error"},
        ) as stream,
    ):
        for _ in stream.text_stream:
            pass
    record = captured.only()
    assert record.error_type == "stream_error"
    assert record.error_code == "overloaded_error"
    assert record.input_tokens is not None  # from message_start, before the error


def test_closing_a_stream_early_is_recorded_as_such(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    client = openai_client(sim, captured)
    stream = client.chat.completions.create(
        model="LongCat-Flash-Chat", messages=MESSAGES, stream=True
    )
    next(iter(stream))
    next(iter(stream))
    stream.close()
    record = captured.only()
    assert record.error_type == "stream_interrupted"
    assert record.error_code == "client_closed"


def test_sdk_retries_are_one_row_per_attempt(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    client = openai_client(sim, captured, max_retries=2)
    completion = client.chat.completions.create(
        model="LongCat-Flash-Chat",
        messages=MESSAGES,
        extra_headers={
            "x-simulate-fault": "server_error",
            "x-simulate-fault-times": "2",
            **FAST_RETRY,
        },
    )
    assert completion.usage is not None
    rows = captured.records
    assert [r.attempt for r in rows] == [0, 1, 2]
    assert [r.error_type for r in rows] == ["server_error", "server_error", None]
    assert rows[-1].total_tokens == completion.usage.total_tokens


def test_timeouts_and_connection_failures(sim: RunningSimulator, captured: CapturedCalls) -> None:
    client = openai_client(sim, captured, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="LongCat-Flash-Chat",
            messages=MESSAGES,
            extra_headers={"x-simulate-fault": "hang"},
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    dead = monitor.instrument(  # closed below
        openai.OpenAI(
            base_url=f"http://127.0.0.1:{closed_port}/openai/v1", api_key=KEY, max_retries=0
        ),
        recorder=captured,
    )
    OPEN_CLIENTS.append(dead)
    with pytest.raises(openai.APIConnectionError):
        dead.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
    timeout, refused = captured.records
    assert (timeout.error_type, timeout.status_code) == ("timeout", None)
    assert (refused.error_type, refused.status_code) == ("connection", None)
    assert refused.error_code == "ConnectError"


def test_slow_first_token_shows_in_ttft(sim: RunningSimulator, captured: CapturedCalls) -> None:
    client = openai_client(sim, captured)
    list(
        client.chat.completions.create(
            model="LongCat-Flash-Chat",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-simulate-fault": "slow_first_token", "x-simulate-delay-ms": "300"},
        )
    )
    record = captured.only()
    assert record.ttft_ms is not None and record.ttft_ms >= 290


def test_instrumenting_twice_records_once(sim: RunningSimulator, captured: CapturedCalls) -> None:
    client = openai_client(sim, captured)
    assert monitor.instrument(client, recorder=captured) is client
    client.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
    assert len(captured.records) == 1


async def test_async_clients_and_labels_per_task(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    oai = monitor.instrument(
        openai.AsyncOpenAI(base_url=sim.openai_base_url, api_key=KEY, max_retries=0),
        recorder=captured,
    )
    ant = monitor.instrument(
        anthropic.AsyncAnthropic(base_url=sim.anthropic_base_url, api_key=KEY, max_retries=0),
        recorder=captured,
    )

    async def openai_task(user: str) -> None:
        with monitor.tags(user=user):
            stream = await oai.chat.completions.create(
                model="LongCat-Flash-Chat", messages=MESSAGES, stream=True
            )
            async for _ in stream:
                await asyncio.sleep(0)

    async def anthropic_task(user: str) -> None:
        with monitor.tags(user=user):
            await ant.messages.create(model="LongCat-2.0", max_tokens=30, messages=MESSAGES)

    await asyncio.gather(openai_task("ann"), anthropic_task("bob"), openai_task("cy"))
    await oai.close()
    await ant.close()
    by_user = {r.labels["user"]: r for r in captured.records}
    assert set(by_user) == {"ann", "bob", "cy"}
    assert by_user["bob"].api == "anthropic" and by_user["ann"].api == "openai"
    assert all(r.error_type is None and r.usage_source == "reported" for r in captured.records)
    assert by_user["ann"].stream and not by_user["bob"].stream


def test_labels_do_not_leak_between_threads(sim: RunningSimulator, captured: CapturedCalls) -> None:
    client = openai_client(sim, captured)

    def call(user: str) -> None:
        with monitor.tags(user=user):
            client.chat.completions.create(model="LongCat-Flash-Lite", messages=MESSAGES)

    threads = [threading.Thread(target=call, args=(f"u{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    with monitor.tags(user="main"):
        client.chat.completions.create(model="LongCat-Flash-Lite", messages=MESSAGES)
    for t in threads:
        t.join()
    assert sorted(r.labels["user"] for r in captured.records) == ["main", "u0", "u1", "u2", "u3"]


def test_a_raw_httpx_client(sim: RunningSimulator, captured: CapturedCalls) -> None:
    with monitor.instrument(httpx.Client(base_url=sim.base_url), recorder=captured) as client:
        response = client.post(
            "/anthropic/v1/messages",
            json={"model": "LongCat-Flash-Chat", "max_tokens": 20, "messages": MESSAGES},
            headers={"x-api-key": KEY},
        )
        with client.stream(
            "POST",
            "/openai/v1/chat/completions",
            json={"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": True},
            headers={"authorization": f"Bearer {KEY}"},
        ) as streamed:
            body = streamed.read()
    assert b"[DONE]" in body and b'"choices":[]' not in body.replace(b" ", b"")
    plain, stream = captured.records
    assert plain.api == "anthropic" and plain.key_id == key_id(KEY)
    assert plain.output_tokens == response.json()["usage"]["output_tokens"]
    assert stream.api == "openai" and stream.usage_source == "reported"


def test_not_a_client_is_refused_clearly() -> None:
    with pytest.raises(monitor.NotInstrumentableError, match="openai or anthropic SDK client"):
        monitor.instrument(object())


def test_a_transport_that_hands_over_bodies_already_read(captured: CapturedCalls) -> None:
    """Mock and WSGI transports return responses whose body is already read: still recorded,
    and an OpenAI stream still reaches the caller without the chunk the monitor asked for."""
    chunk = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'

    def answer(request: httpx.Request) -> httpx.Response:
        asked = b'"include_usage":true' in request.content
        body = chunk + (usage if asked else b"") + b"data: [DONE]\n\n"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = monitor.instrument(
        httpx.Client(transport=httpx.MockTransport(answer)), recorder=captured
    )
    with client:
        response = client.post(
            "http://longcat.test/openai/v1/chat/completions",
            json={"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": True},
            headers={"authorization": f"Bearer {KEY}"},
        )
    assert response.content == chunk + b"data: [DONE]\n\n"
    record = captured.only()
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (3, 1, 4)
    assert record.error_type is None and record.usage_source == "reported"


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_a_stream_request_rewritten_to_ask_for_usage_keeps_the_callers_headers(
    module: str, captured: CapturedCalls
) -> None:
    """The upstream gets the caller's headers in their order, Content-Length the new body's;
    the caller's own request is left as it was."""
    http = __import__(module)
    sent: list[Any] = []

    def answer(request: Any) -> Any:
        sent.append(request)
        return http.Response(
            200, content=b"data: [DONE]\n\n", headers={"content-type": "text/event-stream"}
        )

    client = monitor.instrument(
        http.Client(transport=http.MockTransport(answer)), recorder=captured
    )
    with client:
        response = client.post(
            "http://longcat.test/openai/v1/chat/completions",
            json={"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": True},
            headers={"authorization": f"Bearer {KEY}", "x-trace": "1"},
        )
    (upstream,) = sent
    caller = response.request
    assert b'"include_usage":true' in upstream.content
    assert b"include_usage" not in caller.content
    assert caller.headers["content-length"] == str(len(caller.content))
    assert upstream.headers.get_list("content-length") == [str(len(upstream.content))]
    assert [
        (name, value) for name, value in upstream.headers.items() if name != "content-length"
    ] == [(name, value) for name, value in caller.headers.items() if name != "content-length"]
    assert list(upstream.headers.keys()) == list(caller.headers.keys())
    assert upstream.headers.raw[list(upstream.headers.keys()).index("content-length")][0] == (
        b"Content-Length"
    )
