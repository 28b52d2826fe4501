"""The simulator's ASGI app: LongCat's endpoints, with injectable failures.

Routes: ``POST /openai/v1/chat/completions``, ``POST /openai/v1/responses`` (the Responses API),
``POST /anthropic/v1/messages``, ``GET /openai/v1/models``. Failures are chosen per request with
the ``x-simulate-*`` headers described in :mod:`monitor.simulator.faults`; with
``SimulatorOptions.key_token_budget`` a key that has spent its budget is refused with 402.

>>> from starlette.testclient import TestClient  # doctest: +SKIP
>>> TestClient(create_app()).post("/openai/v1/chat/completions", ...)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from monitor.serving import quiet_about
from monitor.simulator.faults import (
    STATUS_FAULTS,
    STREAM_FAULTS,
    Fault,
    Simulation,
    SimulationHeaderError,
    parse_simulation,
)
from monitor.simulator.responses import (
    DEFAULT_MAX_CONTEXT_TOKENS,
    DEFAULT_WORDS_PER_CHUNK,
    KNOWN_MODELS,
    Api,
    Completion,
    ErrorReply,
    RequestBodyError,
    StreamPlan,
    anthropic_message_body,
    anthropic_stream,
    compress,
    error_reply,
    fault_reply,
    make_encoder,
    openai_completion_body,
    openai_stream,
    plan_completion,
    stream_error_event,
)
from monitor.simulator.responses_api import (
    RESPONSES_STREAM_FAULTS,
    plan_response,
    response_body,
    response_fault_event,
    response_stream,
)

DEFAULT_LATENCY_MS = 2.0
DEFAULT_CHUNK_INTERVAL_MS = 1.0
DEFAULT_HANG_SECONDS = 30.0
DISCONNECT_POLL_SECONDS = 0.05

_REQUEST_ID_HEADER = {Api.OPENAI: "x-request-id", Api.ANTHROPIC: "request-id"}


@dataclass(frozen=True)
class SimulatorOptions:
    """Tunables of the simulated server; the defaults keep tests fast."""

    latency_ms: float = DEFAULT_LATENCY_MS
    """Time before the response headers of every call."""
    chunk_interval_ms: float = DEFAULT_CHUNK_INTERVAL_MS
    """Pause after each content event of a stream."""
    words_per_chunk: int = DEFAULT_WORDS_PER_CHUNK
    hang_seconds: float = DEFAULT_HANG_SECONDS
    """How long the ``hang`` fault keeps the client waiting (or until it disconnects)."""
    max_context_tokens: int = DEFAULT_MAX_CONTEXT_TOKENS
    """Prompts estimated above this are refused with ``context_length_exceeded``."""
    deterministic: bool = False
    """Fixed response ids and timestamps, so identical requests get byte-identical bodies."""
    key_token_budget: int | None = None
    """Tokens each key may spend (its quota and balance together); once spent, every call of
    that key is refused with 402 ``insufficient_quota``. ``None``: no limit."""

    def __post_init__(self) -> None:
        for name in ("latency_ms", "chunk_interval_ms", "hang_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"SimulatorOptions.{name} must not be negative")
        if self.words_per_chunk < 1:
            raise ValueError("SimulatorOptions.words_per_chunk must be at least 1")
        if self.max_context_tokens < 1:
            raise ValueError("SimulatorOptions.max_context_tokens must be at least 1")
        if self.key_token_budget is not None and self.key_token_budget < 0:
            raise ValueError("SimulatorOptions.key_token_budget must not be negative")


class StreamCut(Exception):
    """Raised inside a stream body to drop the connection with no end marker (``cut_stream``)."""


def create_app(options: SimulatorOptions | None = None) -> Starlette:
    """The simulator as a Starlette app (serve it with uvicorn, or see ``RunningSimulator``)."""
    opts = options or SimulatorOptions()
    quiet_about(StreamCut)
    spent: dict[str, int] = {}  # tokens billed per key (only with a key_token_budget)

    async def chat_completions(request: Request) -> Response:
        return await _handle(request, Api.OPENAI, opts, spent)

    async def responses(request: Request) -> Response:
        return await _handle(request, Api.OPENAI, opts, spent, responses_api=True)

    async def messages(request: Request) -> Response:
        return await _handle(request, Api.ANTHROPIC, opts, spent)

    async def models(request: Request) -> Response:
        request_id = _new_request_id()
        denied = _check_auth(request, Api.OPENAI)
        if denied is not None:
            return _error_response(Api.OPENAI, denied, request_id, None)
        created = int(time.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "longcat"}
            for name in KNOWN_MODELS
        ]
        return _json_response({"object": "list", "data": data}, 200, Api.OPENAI, request_id)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        api = Api.ANTHROPIC if request.url.path.startswith("/anthropic") else Api.OPENAI
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {exc}"
        reply = error_reply(api, status, kind, message, code=None)
        return _error_response(api, reply, _new_request_id(), None)

    routes = [
        Route("/openai/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/openai/v1/responses", responses, methods=["POST"]),
        Route("/anthropic/v1/messages", messages, methods=["POST"]),
        Route("/openai/v1/models", models, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error})


async def _handle(
    request: Request,
    api: Api,
    opts: SimulatorOptions,
    spent: dict[str, int],
    *,
    responses_api: bool = False,
) -> Response:
    request_id = _new_request_id()
    denied = _check_auth(request, api)
    if denied is not None:
        return _error_response(api, denied, request_id, None)
    key = _key_of(request, api)
    if opts.key_token_budget is not None and spent.get(key, 0) >= opts.key_token_budget:
        return _error_response(api, fault_reply(api, Fault.QUOTA_EXHAUSTED), request_id, None)

    try:
        sim = parse_simulation(request.headers)
    except SimulationHeaderError as exc:
        reply = error_reply(api, 400, "invalid_request_error", str(exc))
        return _error_response(api, reply, request_id, None)

    try:
        payload = await request.json()
        if not isinstance(payload, dict):
            raise RequestBodyError("the request body must be a JSON object")
        if responses_api:
            plan = plan_response(payload, cached_tokens=sim.cached_tokens)
        else:
            plan = plan_completion(api, payload, cached_tokens=sim.cached_tokens)
    except (RequestBodyError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        reply = error_reply(api, 400, "invalid_request_error", str(exc))
        return _error_response(api, reply, request_id, sim)

    await asyncio.sleep(opts.latency_ms / 1000)
    fault = sim.fault
    if fault is Fault.HANG:
        await _sleep_unless_disconnected(request, opts.hang_seconds)
        fault = None

    if fault in STATUS_FAULTS or (fault in STREAM_FAULTS and not plan.stream):
        assert fault is not None
        reply = fault_reply(
            api, fault, prompt_tokens=plan.prompt_tokens, max_context_tokens=opts.max_context_tokens
        )
        return _error_response(api, reply, request_id, sim)
    if plan.prompt_tokens > opts.max_context_tokens:
        reply = fault_reply(
            api,
            Fault.CONTEXT_LENGTH,
            prompt_tokens=plan.prompt_tokens,
            max_context_tokens=opts.max_context_tokens,
        )
        return _error_response(api, reply, request_id, sim)

    with_usage = fault is not Fault.NO_USAGE
    response_id = _response_id(api, opts, responses_api)
    if opts.key_token_budget is not None:
        spent[key] = spent.get(key, 0) + plan.prompt_tokens + plan.completion_tokens
    if not plan.stream:
        await _sleep_unless_disconnected(request, sim.delay_ms / 1000)
        created = _created(opts)
        if responses_api:
            body = response_body(
                plan, response_id=response_id, created=created, with_usage=with_usage
            )
        elif api is Api.OPENAI:
            body = openai_completion_body(
                plan, completion_id=response_id, created=created, with_usage=with_usage
            )
        else:
            body = anthropic_message_body(plan, message_id=response_id, with_usage=with_usage)
        return _json_response(body, 200, api, request_id, sim)

    events = _stream_plan(api, plan, response_id, opts, with_usage, responses_api)
    failure = stream_error_event(api)
    if responses_api and fault in RESPONSES_STREAM_FAULTS:
        assert fault is not None
        sequence = len(events.head) + sum(1 for e in events.body if e.content) // 2
        failure = response_fault_event(
            fault, plan, response_id=response_id, created=_created(opts), sequence=sequence
        )
    headers = {_REQUEST_ID_HEADER[api]: request_id, "cache-control": "no-cache"}
    if sim.compress is not None:
        headers["content-encoding"] = sim.compress.value
    return StreamingResponse(
        _stream_body(events, failure, sim, fault, opts),
        media_type="text/event-stream",
        headers=headers,
    )


def _stream_plan(
    api: Api,
    plan: Completion,
    response_id: str,
    opts: SimulatorOptions,
    with_usage: bool,
    responses_api: bool,
) -> StreamPlan:
    if responses_api:
        return response_stream(
            plan,
            response_id=response_id,
            created=_created(opts),
            words_per_chunk=opts.words_per_chunk,
            with_usage=with_usage,
        )
    if api is Api.OPENAI:
        return openai_stream(
            plan,
            completion_id=response_id,
            created=_created(opts),
            words_per_chunk=opts.words_per_chunk,
            with_usage=with_usage,
        )
    return anthropic_stream(
        plan, message_id=response_id, words_per_chunk=opts.words_per_chunk, with_usage=with_usage
    )


async def _stream_body(
    events: StreamPlan,
    failure: bytes,
    sim: Simulation,
    fault: Fault | None,
    opts: SimulatorOptions,
) -> AsyncIterator[bytes]:
    encoder = make_encoder(sim.compress) if sim.compress is not None else None

    def out(data: bytes) -> bytes:
        return encoder.encode(data) if encoder is not None else data

    if sim.delay_ms:
        await asyncio.sleep(sim.delay_ms / 1000)
    # Faults strike half-way through the content: "some content, then …".
    content_events = sum(1 for event in events.body if event.content)
    strike_after = max(1, content_events // 2)
    sent_content = 0
    for event in events.events():
        if fault in STREAM_FAULTS and sent_content == strike_after:
            if fault is Fault.CUT_STREAM:
                raise StreamCut("cut_stream: connection dropped mid-stream on purpose")
            yield out(failure)
            break
        yield out(event.data)
        if event.content:
            sent_content += 1
            await asyncio.sleep(opts.chunk_interval_ms / 1000)
    if encoder is not None:
        yield encoder.finish()


async def _sleep_unless_disconnected(request: Request, seconds: float) -> None:
    """Sleep, but stop early once the client has gone (so a server can shut down promptly)."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(remaining, DISCONNECT_POLL_SECONDS))
        if remaining > DISCONNECT_POLL_SECONDS and await request.is_disconnected():
            return


def _key_of(request: Request, api: Api) -> str:
    """The API key a request carries ("" for none)."""
    key = ""
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        key = credentials.strip()
    if not key and api is Api.ANTHROPIC:
        key = request.headers.get("x-api-key", "").strip()
    return key


def _check_auth(request: Request, api: Api) -> ErrorReply | None:
    key = _key_of(request, api)
    if not key:
        message = (
            "Missing API key: send it as 'Authorization: Bearer <key>'."
            if api is Api.OPENAI
            else "Missing API key: send it as 'x-api-key' or 'Authorization: Bearer <key>'."
        )
        return error_reply(api, 401, "authentication_error", message, code="invalid_api_key")
    if "revoked" in key:
        message = "This API key has been revoked."
        return error_reply(api, 401, "authentication_error", message, code="invalid_api_key")
    return None


def _error_response(
    api: Api, reply: ErrorReply, request_id: str, sim: Simulation | None
) -> Response:
    response = _json_response(reply.body, reply.status, api, request_id, sim)
    response.headers.update(reply.headers)
    if sim is not None and sim.retry_after_ms is not None:
        response.headers["retry-after-ms"] = str(sim.retry_after_ms)
    return response


def _json_response(
    body: dict[str, Any],
    status: int,
    api: Api,
    request_id: str,
    sim: Simulation | None = None,
) -> Response:
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {_REQUEST_ID_HEADER[api]: request_id}
    if sim is not None and sim.compress is not None:
        content = compress(sim.compress, content)
        headers["content-encoding"] = sim.compress.value
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _new_request_id() -> str:
    return f"req_{uuid.uuid4().hex[:24]}"


FIXED_CREATED = 1_764_000_000


def _created(opts: SimulatorOptions) -> int:
    return FIXED_CREATED if opts.deterministic else int(time.time())


def _response_id(api: Api, opts: SimulatorOptions, responses_api: bool = False) -> str:
    if responses_api:
        return "resp_fixed" if opts.deterministic else f"resp_{uuid.uuid4().hex}"
    if opts.deterministic:
        return "chatcmpl-fixed" if api is Api.OPENAI else "msg_fixed"
    if api is Api.OPENAI:
        return f"chatcmpl-{uuid.uuid4().hex}"
    return f"msg_{uuid.uuid4().hex[:24]}"
