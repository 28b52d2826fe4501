"""The three accounting bugs reported against today's platform (issue 13), each as the real
openai SDK meets it: the server side is LongCat's wire format, written out by hand here so the
test does not depend on the simulator it is also checking."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from capture import CapturedCalls
from sdk_http import http_module

import monitor

KEY = "sk-longcat-reported-0123456789-QRST"
HTTP = http_module(openai)  # the SDK takes a client of its own generation
USAGE = {
    "input_tokens": 120,
    "input_tokens_details": {"cached_tokens": 100},
    "output_tokens": 40,
    "output_tokens_details": {"reasoning_tokens": 25},
    "total_tokens": 160,
}


def response_object(status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_764_000_000,
        "status": status,
        "model": "LongCat-2.0",
        "output": []
        if status == "in_progress"
        else [
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello there", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def stream_events() -> list[bytes]:
    """A Responses API stream as LongCat ends it: ``response.completed``, then the connection
    closes, with no ``[DONE]``."""
    item = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    return [
        sse({"type": "response.created", "sequence_number": 0,
             "response": response_object("in_progress", None)}),
        sse({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
             "item": item}),
        sse({"type": "response.content_part.added", "sequence_number": 2, **at, "part": part}),
        sse({"type": "response.output_text.delta", "sequence_number": 3, **at, "delta": "Hello",
             "logprobs": []}),
        sse({"type": "response.output_text.delta", "sequence_number": 4, **at, "delta": " there",
             "logprobs": []}),
        sse({"type": "response.completed", "sequence_number": 5,
             "response": response_object("completed", USAGE)}),
    ]  # fmt: skip


def sdk(captured: CapturedCalls, answer: Callable[[HTTP.Request], HTTP.Response]) -> Any:
    http_client = HTTP.Client(transport=HTTP.MockTransport(answer))
    client = openai.OpenAI(
        base_url="http://longcat.test/openai/v1", api_key=KEY, http_client=http_client,
        max_retries=0,
    )  # fmt: skip
    return monitor.instrument(client, recorder=captured)


def test_a_streamed_response_ending_without_done_is_a_success_with_its_usage(
    captured: CapturedCalls,
) -> None:
    def answer(request: HTTP.Request) -> HTTP.Response:
        def body() -> Iterator[bytes]:
            yield from stream_events()

        return HTTP.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    client = sdk(captured, answer)
    with client.responses.stream(model="LongCat-2.0", input="Say hello") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Hello there" and final.usage is not None
    record = captured.only()
    assert record.error_type is None
    assert record.endpoint == "/openai/v1/responses" and record.stream is True
    assert record.usage_source == "reported"
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (120, 40, 160)
    assert (record.cache_read_tokens, record.reasoning_tokens) == (100, 25)
    assert record.ttft_ms is not None


def test_a_response_body_keeps_its_cached_and_reasoning_tokens(captured: CapturedCalls) -> None:
    def answer(request: HTTP.Request) -> HTTP.Response:
        return HTTP.Response(200, json=response_object("completed", USAGE))

    response = sdk(captured, answer).responses.create(model="LongCat-2.0", input="Say hello")
    assert response.usage is not None
    record = captured.only()
    assert record.error_type is None and record.usage_source == "reported"
    assert (record.input_tokens, record.output_tokens, record.total_tokens) == (120, 40, 160)
    assert (record.cache_read_tokens, record.reasoning_tokens) == (100, 25)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (402, {"message": "Insufficient token quota or balance.", "type": "insufficient_quota",
               "code": "insufficient_quota"}),
        (403, {"message": "You exceeded your current quota.", "type": "permission_error",
               "code": "insufficient_quota"}),
    ],
    ids=["402", "403 insufficient_quota"],
)  # fmt: skip
def test_a_refusal_for_quota_is_quota_exhausted(
    captured: CapturedCalls, status: int, error: dict[str, Any]
) -> None:
    def answer(request: HTTP.Request) -> HTTP.Response:
        return HTTP.Response(status, json={"error": {**error, "param": None}})

    with pytest.raises(openai.APIStatusError):
        sdk(captured, answer).responses.create(model="LongCat-2.0", input="Say hello")
    record = captured.only()
    assert (record.status_code, record.error_type) == (status, "quota_exhausted")
    assert record.error_code == "insufficient_quota"
