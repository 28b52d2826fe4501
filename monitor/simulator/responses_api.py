"""Pure builders for the simulator's Responses API (``POST /openai/v1/responses``).

A request is planned as the chat completion it amounts to (``instructions`` and ``input`` as
messages, ``max_output_tokens`` as the cap, ``reasoning`` as thinking enabled), so the same
prompt costs the same tokens on either endpoint. The answer is a ``response`` object, or a stream
of typed events that ends with ``response.completed`` (or ``response.incomplete`` when the cap
cut the answer short) and then closes: there is no ``[DONE]``, as on LongCat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.simulator.faults import Fault
from monitor.simulator.responses import (
    Api,
    Completion,
    RequestBodyError,
    StreamEvent,
    StreamPlan,
    plan_completion,
    split_pieces,
    sse_event,
)


def as_chat_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The chat completions request a Responses API request amounts to."""
    source = body.get("input")
    if isinstance(source, str):
        items: list[Any] = [{"role": "user", "content": source}]
    elif isinstance(source, list) and source:
        items = list(source)
    else:
        raise RequestBodyError("input: a string or a non-empty list of items is required")
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        items.insert(0, {"role": "system", "content": instructions})
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": items,
        "stream": body.get("stream", False),
    }
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping) and reasoning.get("effort") not in ("none", "minimal"):
        chat["thinking"] = {"type": "enabled"}
    return chat


def plan_response(body: Mapping[str, Any], *, cached_tokens: int = 0) -> Completion:
    """Validate a Responses API request body and decide the answer."""
    return plan_completion(Api.OPENAI, as_chat_request(body), cached_tokens=cached_tokens)


def response_usage(plan: Completion) -> dict[str, Any]:
    return {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {"cached_tokens": plan.cached_tokens},
        "output_tokens": plan.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": len(plan.reasoning_words)},
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }


def _items(plan: Completion, response_id: str) -> list[dict[str, Any]]:
    """The output items of the finished answer: reasoning (if any), then the message."""
    suffix = response_id.removeprefix("resp_")
    items: list[dict[str, Any]] = []
    if plan.reasoning_words:
        items.append(
            {
                "id": f"rs_{suffix}",
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": plan.reasoning_text}],
                "status": "completed",
            }
        )
    items.append(
        {
            "id": f"msg_{suffix}",
            "type": "message",
            "role": "assistant",
            "status": "incomplete" if plan.truncated else "completed",
            "content": [_text_part(plan.text)],
        }
    )
    return items


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_object(
    plan: Completion,
    *,
    response_id: str,
    created: int,
    status: str | None = None,
    with_usage: bool = True,
    output: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``response`` object; ``status`` defaults to how the plan ends."""
    if status is None:
        status = "incomplete" if plan.truncated else "completed"
    done = status in ("completed", "incomplete")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None,
        "model": plan.model,
        "output": output if output is not None else (_items(plan, response_id) if done else []),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": response_usage(plan) if with_usage and done else None,
    }


def response_body(
    plan: Completion, *, response_id: str, created: int, with_usage: bool = True
) -> dict[str, Any]:
    """The body of a non-streamed answer."""
    return response_object(plan, response_id=response_id, created=created, with_usage=with_usage)


class _Events:
    """Numbers the events of one stream as it builds them."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, content: bool = False, **fields: Any) -> StreamEvent:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return StreamEvent(sse_event(kind, data), content=content)


def response_stream(
    plan: Completion,
    *,
    response_id: str,
    created: int,
    words_per_chunk: int,
    with_usage: bool = True,
) -> StreamPlan:
    """The typed events of a streamed answer, ending with ``response.completed`` (or
    ``response.incomplete``) and no ``[DONE]``."""
    event = _Events()
    start = response_object(plan, response_id=response_id, created=created, status="in_progress")
    head = [
        event("response.created", response=start),
        event("response.in_progress", response=start),
    ]
    body: list[StreamEvent] = []
    for index, item in enumerate(_items(plan, response_id)):
        at = {"item_id": item["id"], "output_index": index, "content_index": 0}
        if item["type"] == "reasoning":
            body.append(event("response.output_item.added", output_index=index, item=item))
            for piece in split_pieces(plan.reasoning_words, words_per_chunk):
                body.append(event("response.reasoning_text.delta", True, **at, delta=piece))
            body.append(event("response.reasoning_text.done", **at, text=plan.reasoning_text))
        else:
            added = {**item, "status": "in_progress", "content": []}
            body.append(event("response.output_item.added", output_index=index, item=added))
            part = _text_part("")
            body.append(event("response.content_part.added", **at, part=part))
            for piece in split_pieces(plan.words, words_per_chunk):
                body.append(
                    event("response.output_text.delta", True, **at, delta=piece, logprobs=[])
                )
            body.append(event("response.output_text.done", **at, text=plan.text, logprobs=[]))
            body.append(event("response.content_part.done", **at, part=_text_part(plan.text)))
        body.append(event("response.output_item.done", output_index=index, item=item))
    final = response_object(plan, response_id=response_id, created=created, with_usage=with_usage)
    kind = "response.incomplete" if plan.truncated else "response.completed"
    return StreamPlan(head, body, [event(kind, response=final)])


#: The stream faults the Responses API answers with its own failure events.
RESPONSES_STREAM_FAULTS = frozenset(
    {Fault.STREAM_ERROR, Fault.RESPONSE_FAILED, Fault.RESPONSE_INCOMPLETE}
)


def response_fault_event(
    fault: Fault, plan: Completion, *, response_id: str, created: int, sequence: int
) -> bytes:
    """The event a Responses API stream fails with: ``error`` (``stream_error``),
    ``response.failed`` or ``response.incomplete`` (a content filter stopped it)."""
    if fault is Fault.RESPONSE_FAILED:
        failed = response_object(
            plan, response_id=response_id, created=created, status="failed", output=[]
        )
        failed["error"] = {
            "code": "server_error",
            "message": "The model failed to generate a response.",
        }
        data = {"type": "response.failed", "sequence_number": sequence, "response": failed}
        return sse_event("response.failed", data)
    if fault is Fault.RESPONSE_INCOMPLETE:
        stopped = response_object(
            plan, response_id=response_id, created=created, status="incomplete", output=[]
        )
        stopped["incomplete_details"] = {"reason": "content_filter"}
        data = {"type": "response.incomplete", "sequence_number": sequence, "response": stopped}
        return sse_event("response.incomplete", data)
    error = {
        "type": "error",
        "sequence_number": sequence,
        "code": "server_error",
        "message": "The server had an error while processing your request.",
        "param": None,
    }
    return sse_event("error", error)
