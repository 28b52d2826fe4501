"""Pure builders for the simulator: token counts, bodies, SSE events, errors, encodings.

Nothing here does I/O; :mod:`monitor.simulator.app` decides when each piece is sent.

Token accounting
----------------
Input tokens are estimated from the request's text (about four characters a token, plus a few per
message); output tokens are the generated words, one token a word, capped by the request's
``max_tokens`` (OpenAI ``max_completion_tokens`` / ``max_tokens``). Thinking models also spend
reasoning tokens, which count as output. With ``N`` cached tokens the prompt is at least ``N``
tokens; OpenAI reports ``prompt_tokens`` = the whole prompt with ``cached_tokens`` = ``N``,
Anthropic reports ``input_tokens`` = the uncached part and ``cache_read_input_tokens`` = ``N``,
as the real APIs do.
"""

from __future__ import annotations

import enum
import hashlib
import json
import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import brotli
import zstandard

from monitor.simulator.faults import Compression, Fault

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REQUEST = 3
MIN_OUTPUT_WORDS = 16
MAX_OUTPUT_WORDS = 64
MIN_REASONING_TOKENS = 24
MAX_REASONING_TOKENS = 96
DEFAULT_WORDS_PER_CHUNK = 3
DEFAULT_MAX_CONTEXT_TOKENS = 131_072
RATE_LIMIT_RETRY_AFTER_S = 60

KNOWN_MODELS = (
    "LongCat-Flash-Chat",
    "LongCat-Flash-Thinking",
    "LongCat-Flash-Lite",
    "LongCat-2.0",
    "LongCat-2.5-Preview",
)

_LOREM = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
    "occaecat",
    "cupidatat",
    "non",
    "proident",
    "sunt",
    "culpa",
    "qui",
    "officia",
    "deserunt",
    "mollit",
    "anim",
    "id",
    "est",
    "laborum",
)


class Api(enum.StrEnum):
    """Which wire format a request came in on."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class RequestBodyError(ValueError):
    """The request body is not a valid call; answered with a 400 ``invalid_request_error``."""


@dataclass(frozen=True)
class Completion:
    """Everything one answer contains, decided up front from the request."""

    model: str
    words: tuple[str, ...]
    reasoning_words: tuple[str, ...]
    prompt_tokens: int
    cached_tokens: int
    truncated: bool
    stream: bool = False
    include_usage: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def reasoning_text(self) -> str:
        return " ".join(self.reasoning_words)

    @property
    def completion_tokens(self) -> int:
        return len(self.words) + len(self.reasoning_words)

    @property
    def uncached_prompt_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


def is_thinking_model(model: str) -> bool:
    return "thinking" in model.lower()


def thinking_enabled(body: Mapping[str, Any]) -> bool | None:
    """What the request's ``thinking: {"type": "enabled"|"disabled"}`` switch says (None: no
    switch, the model's own default)."""
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "disabled"):
        return bool(thinking["type"] == "enabled")
    return None


def estimate_input_tokens(api: Api, body: Mapping[str, Any]) -> int:
    """About four characters a token, plus a few tokens per message."""
    messages = body.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    chars = len(_text_of(messages))
    if api is Api.ANTHROPIC:
        system = body.get("system")
        if system:
            count += 1
            chars += len(_text_of(system))
    return TOKENS_PER_REQUEST + TOKENS_PER_MESSAGE * count + -(-chars // CHARS_PER_TOKEN)


def plan_completion(
    api: Api,
    body: Mapping[str, Any],
    *,
    cached_tokens: int = 0,
) -> Completion:
    """Validate a request body and decide the answer (same request, same answer)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestBodyError("model: a model name is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestBodyError("messages: at least one message is required")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestBodyError("stream: must be a boolean")

    include_usage = False
    if api is Api.OPENAI:
        cap = _optional_positive_int(body, "max_completion_tokens")
        if cap is None:
            cap = _optional_positive_int(body, "max_tokens")
        options = body.get("stream_options")
        if isinstance(options, Mapping):
            include_usage = bool(options.get("include_usage", False))
    else:
        cap = _optional_positive_int(body, "max_tokens")
        if cap is None:
            raise RequestBodyError("max_tokens: Field required")

    # stream_options does not change the text: asking for usage must not change the answer
    seeded = {k: v for k, v in body.items() if k != "stream_options"}
    seed = hashlib.sha256(json.dumps(seeded, sort_keys=True, default=str).encode()).digest()
    rng = random.Random(seed)
    n_words = rng.randint(MIN_OUTPUT_WORDS, MAX_OUTPUT_WORDS)
    thinks = thinking_enabled(body)
    if thinks is None:
        thinks = is_thinking_model(model)
    n_reasoning = rng.randint(MIN_REASONING_TOKENS, MAX_REASONING_TOKENS) if thinks else 0
    truncated = False
    if cap is not None and n_words + n_reasoning > cap:
        truncated = True
        n_reasoning = min(n_reasoning, max(cap - 1, 0))
        n_words = cap - n_reasoning

    prompt_tokens = max(estimate_input_tokens(api, body), cached_tokens)
    return Completion(
        model=model,
        words=_sentence(rng, n_words),
        reasoning_words=_sentence(rng, n_reasoning),
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
        truncated=truncated,
        stream=stream,
        include_usage=include_usage,
    )


# --- OpenAI chat completions ------------------------------------------------------------------


def openai_usage(plan: Completion) -> dict[str, Any]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": len(plan.reasoning_words)},
    }


def openai_finish_reason(plan: Completion) -> str:
    return "length" if plan.truncated else "stop"


def openai_completion_body(
    plan: Completion, *, completion_id: str, created: int, with_usage: bool = True
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text}
    if plan.reasoning_words:
        message["reasoning_content"] = plan.reasoning_text
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": plan.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": openai_finish_reason(plan),
            }
        ],
    }
    if with_usage:
        body["usage"] = openai_usage(plan)
    return body


@dataclass(frozen=True)
class StreamEvent:
    """One SSE event, already framed; ``content`` marks events that carry generated text."""

    data: bytes
    content: bool = False


@dataclass(frozen=True)
class StreamPlan:
    """The events of a stream: ``head`` (before any text), ``body`` (text), ``tail`` (the end)."""

    head: list[StreamEvent] = field(default_factory=list)
    body: list[StreamEvent] = field(default_factory=list)
    tail: list[StreamEvent] = field(default_factory=list)

    def events(self) -> list[StreamEvent]:
        return [*self.head, *self.body, *self.tail]


def openai_stream(
    plan: Completion,
    *,
    completion_id: str,
    created: int,
    words_per_chunk: int = DEFAULT_WORDS_PER_CHUNK,
    with_usage: bool = True,
) -> StreamPlan:
    """``chat.completion.chunk`` events: role, reasoning and content deltas, usage, ``[DONE]``.

    The usage chunk (``choices: []``) is sent only when the request asked ``include_usage``; in
    that case every other chunk carries ``"usage": null``, as the real API does.
    """

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        obj: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": plan.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if plan.include_usage:
            obj["usage"] = None
        return sse_data(obj)

    head = [StreamEvent(chunk({"role": "assistant", "content": ""}))]
    body = [
        StreamEvent(chunk({"reasoning_content": piece}), content=True)
        for piece in split_pieces(plan.reasoning_words, words_per_chunk)
    ]
    pieces = split_pieces(plan.words, words_per_chunk)
    for number, piece in enumerate(pieces, start=1):
        finish = openai_finish_reason(plan) if number == len(pieces) else None
        body.append(StreamEvent(chunk({"content": piece}, finish), content=True))
    if not pieces:
        body.append(StreamEvent(chunk({}, openai_finish_reason(plan))))

    tail: list[StreamEvent] = []
    if plan.include_usage and with_usage:
        usage_chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": plan.model,
            "choices": [],
            "usage": openai_usage(plan),
        }
        tail.append(StreamEvent(sse_data(usage_chunk)))
    tail.append(StreamEvent(SSE_DONE))
    return StreamPlan(head, body, tail)


# --- Anthropic messages -----------------------------------------------------------------------


def anthropic_usage(plan: Completion, *, output_tokens: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": plan.uncached_prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": plan.cached_tokens,
        "output_tokens": plan.completion_tokens if output_tokens is None else output_tokens,
    }


def anthropic_stop_reason(plan: Completion) -> str:
    return "max_tokens" if plan.truncated else "end_turn"


def _thinking_signature(plan: Completion) -> str:
    return hashlib.sha256(plan.reasoning_text.encode()).hexdigest()


def anthropic_message_body(
    plan: Completion, *, message_id: str, with_usage: bool = True
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if plan.reasoning_words:
        content.append(
            {
                "type": "thinking",
                "thinking": plan.reasoning_text,
                "signature": _thinking_signature(plan),
            }
        )
    content.append({"type": "text", "text": plan.text})
    body: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": anthropic_stop_reason(plan),
        "stop_sequence": None,
    }
    if with_usage:
        body["usage"] = anthropic_usage(plan)
    return body


def anthropic_stream(
    plan: Completion,
    *,
    message_id: str,
    words_per_chunk: int = DEFAULT_WORDS_PER_CHUNK,
    with_usage: bool = True,
) -> StreamPlan:
    """``message_start``, blocks with their deltas, ``message_delta``, ``message_stop``."""
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if with_usage:
        message["usage"] = anthropic_usage(plan, output_tokens=1)
    head = [StreamEvent(sse_event("message_start", {"type": "message_start", "message": message}))]

    body: list[StreamEvent] = []
    index = 0
    if plan.reasoning_words:
        body.append(_block_start(index, {"type": "thinking", "thinking": "", "signature": ""}))
        if index == 0:
            body.append(StreamEvent(sse_event("ping", {"type": "ping"})))
        for piece in split_pieces(plan.reasoning_words, words_per_chunk):
            body.append(_block_delta(index, {"type": "thinking_delta", "thinking": piece}))
        signature = {"type": "signature_delta", "signature": _thinking_signature(plan)}
        body.append(_block_delta(index, signature))
        body.append(_block_stop(index))
        index += 1
    body.append(_block_start(index, {"type": "text", "text": ""}))
    if index == 0:
        body.append(StreamEvent(sse_event("ping", {"type": "ping"})))
    for piece in split_pieces(plan.words, words_per_chunk):
        body.append(_block_delta(index, {"type": "text_delta", "text": piece}))
    body.append(_block_stop(index))

    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": anthropic_stop_reason(plan), "stop_sequence": None},
    }
    if with_usage:
        delta["usage"] = {"output_tokens": plan.completion_tokens}
    tail = [
        StreamEvent(sse_event("message_delta", delta)),
        StreamEvent(sse_event("message_stop", {"type": "message_stop"})),
    ]
    return StreamPlan(head, body, tail)


def _block_start(index: int, block: dict[str, Any]) -> StreamEvent:
    data = {"type": "content_block_start", "index": index, "content_block": block}
    return StreamEvent(sse_event("content_block_start", data))


def _block_delta(index: int, delta: dict[str, Any]) -> StreamEvent:
    data = {"type": "content_block_delta", "index": index, "delta": delta}
    return StreamEvent(sse_event("content_block_delta", data), content=True)


def _block_stop(index: int) -> StreamEvent:
    data = {"type": "content_block_stop", "index": index}
    return StreamEvent(sse_event("content_block_stop", data))


# --- Errors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorReply:
    """An error answer: status, JSON body and any extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _ErrorKind:
    status: int
    openai_type: str
    openai_code: str | None
    anthropic_type: str
    message: str


_FAULT_ERRORS: dict[Fault, _ErrorKind] = {
    Fault.AUTH: _ErrorKind(
        401,
        "authentication_error",
        "invalid_api_key",
        "authentication_error",
        "Invalid API key provided.",
    ),
    Fault.PERMISSION: _ErrorKind(
        403,
        "permission_error",
        "permission_denied",
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    Fault.RATE_LIMIT: _ErrorKind(
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        "rate_limit_error",
        "Rate limit exceeded, please retry after 60 seconds.",
    ),
    Fault.BAD_REQUEST: _ErrorKind(
        400,
        "invalid_request_error",
        "invalid_request",
        "invalid_request_error",
        "Invalid request: the request body could not be processed.",
    ),
    Fault.NOT_FOUND: _ErrorKind(
        404,
        "invalid_request_error",
        "model_not_found",
        "not_found_error",
        "The requested model or resource was not found.",
    ),
    Fault.SERVER_ERROR: _ErrorKind(
        500,
        "server_error",
        "internal_error",
        "api_error",
        "The server had an error while processing your request.",
    ),
    Fault.OVERLOADED: _ErrorKind(
        503,
        "server_error",
        "service_unavailable",
        "overloaded_error",
        "Overloaded",
    ),
    Fault.QUOTA_EXHAUSTED: _ErrorKind(
        402,
        "insufficient_quota",
        "insufficient_quota",
        "billing_error",
        "Insufficient token quota or balance: the daily quota is used up and the balance is empty.",
    ),
    Fault.INSUFFICIENT_QUOTA: _ErrorKind(
        403,
        "permission_error",
        "insufficient_quota",
        "permission_error",
        "This API key has exhausted its quota.",
    ),
    Fault.BAD_GATEWAY: _ErrorKind(
        502,
        "server_error",
        "bad_gateway",
        "api_error",
        "Bad gateway.",
    ),
    Fault.SERVICE_UNAVAILABLE: _ErrorKind(
        503,
        "server_error",
        "service_unavailable",
        "api_error",
        "The service is temporarily unavailable.",
    ),
}


def error_reply(
    api: Api, status: int, error_type: str, message: str, code: str | None = None
) -> ErrorReply:
    """An error in the endpoint's own shape."""
    if api is Api.OPENAI:
        body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        return ErrorReply(status, body)
    return ErrorReply(status, anthropic_error_body(error_type, message))


def anthropic_error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def fault_reply(
    api: Api,
    fault: Fault,
    *,
    prompt_tokens: int = 0,
    max_context_tokens: int = DEFAULT_MAX_CONTEXT_TOKENS,
) -> ErrorReply:
    """The error answer of a status fault (anything in ``STATUS_FAULTS``; others: a 500)."""
    if fault is Fault.CONTEXT_LENGTH:
        requested = max(prompt_tokens, max_context_tokens + 1)
        if api is Api.OPENAI:
            message = (
                f"This model's maximum context length is {max_context_tokens} tokens. "
                f"However, your messages resulted in {requested} tokens. "
                "Please reduce the length of the messages."
            )
        else:
            message = f"prompt is too long: {requested} tokens > {max_context_tokens} maximum"
        return error_reply(
            api, 400, "invalid_request_error", message, code="context_length_exceeded"
        )

    kind = _FAULT_ERRORS.get(fault, _FAULT_ERRORS[Fault.SERVER_ERROR])
    if api is Api.OPENAI:
        reply = error_reply(api, kind.status, kind.openai_type, kind.message, kind.openai_code)
    else:
        status = 529 if fault is Fault.OVERLOADED else kind.status
        reply = error_reply(api, status, kind.anthropic_type, kind.message)
    if fault is Fault.RATE_LIMIT:
        if api is Api.OPENAI:
            reply.body["error"]["retry_after"] = RATE_LIMIT_RETRY_AFTER_S
        reply.headers["retry-after"] = str(RATE_LIMIT_RETRY_AFTER_S)
    return reply


def stream_error_event(api: Api) -> bytes:
    """The in-band error a stream carries when the server fails mid-answer."""
    if api is Api.OPENAI:
        error = {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
        return sse_data({"error": error})
    return sse_event("error", anthropic_error_body("overloaded_error", "Overloaded"))


# --- SSE framing and text ---------------------------------------------------------------------

SSE_DONE = b"data: [DONE]\n\n"


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse_data(obj: object) -> bytes:
    """An OpenAI-style event: ``data: {json}\\n\\n``."""
    return f"data: {_dumps(obj)}\n\n".encode()


def sse_event(name: str, obj: object) -> bytes:
    """An Anthropic-style event: ``event: NAME\\ndata: {json}\\n\\n``."""
    return f"event: {name}\ndata: {_dumps(obj)}\n\n".encode()


def split_pieces(words: Sequence[str], words_per_chunk: int) -> list[str]:
    """Group words into deltas whose concatenation is ``" ".join(words)``."""
    size = max(1, words_per_chunk)
    pieces = []
    for start in range(0, len(words), size):
        piece = " ".join(words[start : start + size])
        pieces.append(piece if start == 0 else " " + piece)
    return pieces


def _sentence(rng: random.Random, count: int) -> tuple[str, ...]:
    if count <= 0:
        return ()
    words = [rng.choice(_LOREM) for _ in range(count)]
    words[0] = words[0].capitalize()
    words[-1] += "."
    return tuple(words)


def _text_of(value: object) -> str:
    """All the text in message content: strings, and ``text``/``content`` of parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text_of(item) for item in value)
    if isinstance(value, Mapping):
        return "".join(
            _text_of(value[key]) for key in ("text", "content", "thinking") if key in value
        )
    return ""


def _optional_positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestBodyError(f"{name}: must be a positive integer")
    return value


# --- Content encodings ------------------------------------------------------------------------


class Encoder(Protocol):
    """Incremental body compression: every ``encode`` output is decodable on its own arrival."""

    def encode(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _ZlibEncoder:
    def __init__(self, wbits: int) -> None:
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush(zlib.Z_FINISH)


class _BrotliEncoder:
    def __init__(self) -> None:
        self._compressor = brotli.Compressor()

    def encode(self, data: bytes) -> bytes:
        return cast(bytes, self._compressor.process(data) + self._compressor.flush())

    def finish(self) -> bytes:
        return cast(bytes, self._compressor.finish())


class _ZstdEncoder:
    def __init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor().compressobj()

    def encode(self, data: bytes) -> bytes:
        chunk = self._compressor.compress(data)
        return chunk + self._compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._compressor.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def make_encoder(compression: Compression) -> Encoder:
    if compression is Compression.GZIP:
        return _ZlibEncoder(wbits=31)
    if compression is Compression.DEFLATE:
        return _ZlibEncoder(wbits=15)
    if compression is Compression.BR:
        return _BrotliEncoder()
    return _ZstdEncoder()


def compress(compression: Compression, data: bytes) -> bytes:
    encoder = make_encoder(compression)
    return encoder.encode(data) + encoder.finish()
