"""Pure extraction of what a call cost and how it failed, from request and response bodies.

No I/O here: bytes in, plain values out. The transport feeds it; tests feed it directly.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from monitor.records import Api, UsageSource

ERROR_MESSAGE_LIMIT: Final = 500
CHARS_PER_TOKEN: Final = 4  # the usual estimate for English text; CJK counts one token a character

_CONTEXT_LENGTH_HINTS: Final = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",  # Anthropic's wording
)
#: The error code (or type) of a refusal because the key's token quota or balance is spent.
INSUFFICIENT_QUOTA: Final = "insufficient_quota"


#: What json.loads calls underneath (in C); typeshed does not declare the attribute.
_scan_json: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads_json(data: bytes) -> Any:
    """``json.loads(data)``, about twice as quick for the usual compact UTF-8 object (what the
    APIs send): the C scanner is called directly, without the encoding detection and the
    whitespace passes around it. Anything else, and every error, goes through ``json.loads``."""
    if data[:1] == b"{" and data[-1:] == b"}":
        try:
            text = data.decode("utf-8", "surrogatepass")  # as json.loads decodes UTF-8
            value, end = _scan_json(text, 0)
        except (UnicodeDecodeError, StopIteration, ValueError):
            pass  # json.loads says what is wrong
        else:
            if end == len(text):
                return value
    return json.loads(data)


@functools.lru_cache(maxsize=256)  # a client calls few paths, many times
def api_for_path(path: str) -> Api:
    """Which API style a request path speaks."""
    if "/anthropic/" in path or path.endswith("/v1/messages") or path.endswith("/messages"):
        return "anthropic"
    if "/openai/" in path or path.endswith(
        ("/chat/completions", "/completions", "/embeddings", "/responses")
    ):
        return "openai"
    return "other"


def is_responses_path(path: str) -> bool:
    """Whether a request path is the OpenAI Responses API (``POST …/v1/responses``)."""
    return path.endswith("/responses")


def estimate_tokens(text_chars: int, non_ascii_chars: int = 0) -> int:
    """A rough token count for text of the given size (used only when no usage was reported)."""
    ascii_chars = max(text_chars - non_ascii_chars, 0)
    return math.ceil(ascii_chars / CHARS_PER_TOKEN) + non_ascii_chars


def text_size(text: str) -> tuple[int, int]:
    """(characters, non-ASCII characters) of ``text``."""
    if text.isascii():
        return len(text), 0
    return len(text), sum(1 for ch in text if ord(ch) > 127)


@dataclass(slots=True)
class Usage:
    """Token counts of one call; ``None`` where the API did not say."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    source: UsageSource = "none"


#: The most tokens one count of a call may hold and be recorded, far above any model's context:
#: a quarter of the database's 32-bit integer columns, so that a total of four counts fits too.
MAX_TOKEN_COUNT: Final = 2**31 // 4 - 1


_ABSENT: Final = object()


def _int(value: Any) -> int | None:
    """A token count, or None for what cannot be one: negative, fractional, not a number, or
    too big for the database's columns (Postgres's binary COPY would store it wrapped around)."""
    if type(value) is not int:  # the usual case is an int (bool is a subclass: not taken here)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, float) and not value.is_integer():
            return None
        value = int(value)
    return value if 0 <= value <= MAX_TOKEN_COUNT else None


def openai_usage(usage: Any) -> Usage | None:
    """OpenAI style ``usage`` object → Usage (``None`` when it is not one)."""
    if not isinstance(usage, dict):
        return None
    get = usage.get
    # a plain int is taken as it is, without the call that checks everything else
    value = get("prompt_tokens", _ABSENT)
    if value is _ABSENT:
        value = get("input_tokens")
    input_tokens = value if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT else _int(value)
    value = get("completion_tokens", _ABSENT)
    if value is _ABSENT:
        value = get("output_tokens")
    output_tokens = value if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT else _int(value)
    value = get("total_tokens")
    total_tokens = value if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT else _int(value)
    if input_tokens is None and output_tokens is None and total_tokens is None:
        return None
    if total_tokens is None:
        total_tokens = (input_tokens or 0) + (output_tokens or 0)
    # chat completions name the details after prompt/completion, the Responses API input/output
    prompt_details = get("prompt_tokens_details") or get("input_tokens_details")
    completion_details = get("completion_tokens_details") or get("output_tokens_details")
    return Usage(
        input_tokens,
        output_tokens,
        total_tokens,
        _int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None,
        None,
        _int(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else None,
        "reported",
    )


def anthropic_usage(usage: Any, into: Usage | None = None) -> Usage | None:
    """Anthropic style ``usage`` → Usage. Merges into ``into`` (stream events add to one call).

    LongCat, like Anthropic, bills cache reads and writes as input: they count toward the total.
    """
    if not isinstance(usage, dict):
        return into
    result = into if into is not None else Usage(source="reported")
    result.source = "reported"
    for field, attr in (
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cache_read_input_tokens", "cache_read_tokens"),
        ("cache_creation_input_tokens", "cache_write_tokens"),
    ):
        value = _int(usage.get(field))
        if value is not None:
            setattr(result, attr, value)
    inputs = (
        (result.input_tokens or 0)
        + (result.cache_read_tokens or 0)
        + (result.cache_write_tokens or 0)
    )
    result.total_tokens = inputs + (result.output_tokens or 0)
    return result


@dataclass(slots=True, frozen=True)
class ErrorInfo:
    error_type: str
    code: str | None = None
    message: str | None = None
    retry_after_s: float | None = None


def _snippet(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= ERROR_MESSAGE_LIMIT else text[: ERROR_MESSAGE_LIMIT - 1] + "…"


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def error_fields(body: Any) -> tuple[str | None, str | None, str | None, float | None]:
    """(type, code, message, retry_after) from either API's error body shape."""
    if not isinstance(body, dict):
        return None, None, None, None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return (
            _str(error.get("type")),
            _str(code) if code is not None else None,
            _str(error.get("message")),
            _float(error.get("retry_after")),
        )
    if isinstance(error, str):
        return None, None, error, None
    return None, None, _str(body.get("message")), None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else (None if value is None else str(value))


def classify_status(
    status: int, body: Any = None, retry_after_header: str | None = None
) -> ErrorInfo | None:
    """The error class of a response (``None`` for success), using the body where it helps."""
    if status < 400:
        return None
    kind, code, message, retry_after = error_fields(body)
    if retry_after is None:
        retry_after = _float(retry_after_header)
    haystack = " ".join(filter(None, (kind, code, message))).lower()
    error_type: str
    if status == 401:
        error_type = "auth"
    elif status == 402 or (status in (403, 429) and INSUFFICIENT_QUOTA in (code, kind)):
        error_type = "quota_exhausted"  # LongCat: 402; the key's own quota: 403 (OpenAI: 429)
    elif status == 403:
        error_type = "permission"
    elif status == 429:
        error_type = "rate_limit"
    elif status == 404:
        error_type = "not_found"
    elif status == 408:
        error_type = "timeout"
    elif status == 529 or kind == "overloaded_error":
        error_type = "overloaded"
    elif status >= 500:
        error_type = "server_error"
    elif any(hint in haystack for hint in _CONTEXT_LENGTH_HINTS):
        error_type = "context_length_exceeded"
    else:
        error_type = "bad_request"
    return ErrorInfo(error_type, code or kind, _snippet(message), retry_after)


_STREAM_TRUE: Final = re.compile(rb'"stream"\s*:\s*true')
_MODEL_FIELD: Final = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')


@dataclass(slots=True)
class RequestFacts:
    """What the request body tells: model, streaming, whether usage was asked for.

    The body is kept so the prompt can be sized for an estimate, which only a call that
    reports no usage needs: the caller's thread does not pay for it otherwise.
    """

    model: str | None = None
    stream: bool = False
    wants_stream_usage: bool = False
    body: bytes = b""

    def prompt_size(self) -> tuple[int, int]:
        """(characters, non-ASCII characters) of the prompt text in the body."""
        try:
            parsed = json.loads(self.body) if self.body else None
        except (ValueError, RecursionError):
            return len(self.body), 0
        if not isinstance(parsed, dict):
            return 0, 0
        texts: list[str] = []
        fields = ("messages", "system", "prompt", "input", "instructions")
        _collect_text({name: parsed.get(name) for name in fields}, texts)
        chars = non_ascii = 0
        for text in texts:
            c, n = text_size(text)
            chars += c
            non_ascii += n
        return chars, non_ascii


def _collect_text(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect_text(item, out, depth + 1)
    elif isinstance(value, dict):
        for key in ("content", "text", "system", "messages", "input", "prompt"):
            if key in value:
                _collect_text(value[key], out, depth + 1)


def request_facts(body: bytes) -> tuple[RequestFacts, dict[str, Any] | None]:
    """Read a JSON request body; the parsed dict is returned too when the caller may rewrite it.

    Only a body that may ask for a stream is parsed in full; for the others a byte search finds
    the model, which keeps the caller's thread free of a JSON parse on every call.
    """
    facts = RequestFacts(body=body)
    if not _STREAM_TRUE.search(body):
        found = _MODEL_FIELD.search(body)
        facts.model = found.group(1).decode("utf-8", "replace") if found else None
        return facts, None
    try:
        parsed = loads_json(body)
    except (ValueError, RecursionError):
        return facts, None
    if not isinstance(parsed, dict):
        return facts, None
    options = parsed.get("stream_options")
    model = parsed.get("model")
    facts.model = model if isinstance(model, str) else None
    facts.stream = parsed.get("stream") is True
    facts.wants_stream_usage = isinstance(options, dict) and options.get("include_usage") is True
    return facts, parsed


def with_stream_usage(body: bytes, parsed: dict[str, Any]) -> bytes:
    """The request body asking for ``stream_options.include_usage``.

    Without ``stream_options`` the field is put in front of the others and the rest of the
    bytes are left exactly as the caller's code wrote them; otherwise the body is re-encoded.
    """
    options = parsed.get("stream_options")
    if options is None and "stream_options" not in parsed:
        opening = body.index(b"{") + 1
        return body[:opening] + b'"stream_options":{"include_usage":true},' + body[opening:]
    merged = dict(options) if isinstance(options, dict) else {}
    merged["include_usage"] = True
    return json.dumps({**parsed, "stream_options": merged}, ensure_ascii=False).encode()


@dataclass(slots=True)
class BodyFacts:
    """What a complete (non-stream) response body tells."""

    usage: Usage | None = None
    model: str | None = None
    error: ErrorInfo | None = None


_USAGE_TAIL = re.compile(rb'"usage"\s*:\s*(\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\})')


def _usage_of(api: Api, usage: Any) -> Usage | None:
    return anthropic_usage(usage) if api == "anthropic" else openai_usage(usage)


def _usage_from_tail(api: Api, body: bytes) -> Usage | None:
    # The last match of _USAGE_TAIL, found from the end: where the last "usage" key matches,
    # that is the last match (no earlier match can hold it: its object would nest too deep).
    last = body.rfind(b'"usage"')
    if last < 0:
        return None
    match = _USAGE_TAIL.match(body, last)
    if match:
        found = match.group(1)
    else:
        every = _USAGE_TAIL.findall(body)
        if not every:
            return None
        found = every[-1]
    try:
        usage = loads_json(found)
        return anthropic_usage(usage) if api == "anthropic" else openai_usage(usage)
    except (ValueError, RecursionError):
        return None


def body_facts(
    api: Api,
    status: int,
    body: bytes | None,
    retry_after_header: str | None = None,
    truncated: bool = False,
) -> BodyFacts:
    """Usage, model and error class from a whole JSON body (or its tail when ``truncated``).

    A successful body is searched for its ``usage`` object rather than parsed whole: a JSON
    string cannot hold an unescaped ``"usage": {``, so the match is the real one. Error bodies,
    and bodies where the search finds nothing, are parsed.
    """
    if body and status < 400:
        usage = _usage_from_tail(api, body)
        if usage is not None or truncated:
            model = None if truncated else _MODEL_FIELD.search(body)
            return BodyFacts(usage, model.group(1).decode("utf-8", "replace") if model else None)
    parsed: Any = None
    if body and not truncated:
        try:
            parsed = loads_json(body)
        except (ValueError, RecursionError):
            parsed = None
    facts = BodyFacts(error=classify_status(status, parsed, retry_after_header))
    if not isinstance(parsed, dict):
        return facts
    model = parsed.get("model")
    facts.model = model if isinstance(model, str) else None
    facts.usage = _usage_of(
        "anthropic" if parsed.get("type") == "message" else api, parsed.get("usage")
    )
    return facts
