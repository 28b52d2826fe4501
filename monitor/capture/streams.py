"""Pure readers of the APIs' SSE streams: usage, model, first content, end marker, errors.

Three shapes: OpenAI chat completions (chunks ending with ``data: [DONE]``), the OpenAI
Responses API (typed events ending with ``response.completed``, then the connection closes) and
Anthropic messages (typed events ending with ``message_stop``).

Content chunks are recognised with cheap byte patterns; only the few events that carry usage or
an error are parsed as JSON, so reading a stream costs the caller almost nothing. Byte searches
on this path use ``bytes.find``: on bytes, ``in`` first tries its operand as an integer and
raises and clears a TypeError every time, which costs more than the search (CPython 3.11); a
single byte is looked up as an int (``13 in data`` for CR), which takes the direct path.
"""

from __future__ import annotations

import re
from typing import Any, Final

from monitor.capture.bodies import (
    ErrorInfo,
    Usage,
    anthropic_usage,
    error_fields,
    is_responses_path,
    loads_json,
    openai_usage,
    text_size,
)
from monitor.capture.sse import SSEEvent

_OPENAI_USAGE: Final = re.compile(rb'"usage"\s*:\s*\{')
_OPENAI_CONTENT: Final = re.compile(
    rb'"(?:content|reasoning_content|arguments)"\s*:\s*"((?:[^"\\]|\\.)+)"'
)
_ANTHROPIC_DELTA_TEXT: Final = re.compile(
    rb'"(?:text|thinking|partial_json)"\s*:\s*"((?:[^"\\]|\\.)+)"'
)
_OPENAI_DONE: Final = re.compile(rb"^data: ?\[DONE\][ \t]*$", re.MULTILINE)
_ANTHROPIC_SPECIAL: Final = re.compile(
    rb"^(?:event: ?(?:message_start|message_delta|message_stop|error)\b|data: ?[^{ ])",
    re.MULTILINE,
)
_MODEL: Final = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_ERROR_KEY: Final = re.compile(rb'^\s*\{\s*"error"\s*:')
#: Content read after a stream's first is kept back uncounted up to this many bytes: a stream
#: that reports its usage (nearly all) never needs its text counted, so it is counted only
#: when an estimate asks for it, or when this much is waiting.
UNCOUNTED_LIMIT: Final = 64 * 1024


_NULL_USAGE: Final = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,\s*')
#: What both of ``_NULL_USAGE``'s forms hold: a quick no for a chunk with a real usage (its
#: literal start lets the search skip ahead in C, where ``_NULL_USAGE`` tries every byte).
_NULL_USAGE_ANY: Final = re.compile(rb'"usage"\s*:\s*null')
#: What ``_NULL_USAGE`` matches in nearly every chunk, with the brace after it.
_NULL_USAGE_LAST: Final = b',"usage":null}'


def without_null_usage(raw: bytes) -> bytes:
    """OpenAI chunks as the server writes them when usage was not asked for.

    Asking for usage makes the server add ``"usage": null`` to every chunk; the monitor, which
    asked on the caller's behalf, takes it out again. (A JSON string cannot contain an unescaped
    ``"usage"``, so only the real field matches.)
    """
    if raw.find(b'"usage"') < 0:
        return raw
    raw = raw.replace(_NULL_USAGE_LAST, b"}")  # the usual form, as the last field, in C
    if raw.find(b'"usage"') < 0 or _NULL_USAGE_ANY.search(raw) is None:
        return raw
    return _NULL_USAGE.sub(b"", raw)


def null_usage_removed(raw: bytes) -> bytes | None:
    """``without_null_usage(raw)`` for ``raw`` that holds a ``"usage"`` key, when no such key is
    left after it (its null usages were all there was), else None: one search of the result
    less than asking it, and none of ``raw`` again."""
    out = raw.replace(_NULL_USAGE_LAST, b"}")
    if out.find(b'"usage"') < 0:
        return out
    if _NULL_USAGE_ANY.search(out) is None:
        return None  # a usage that is not null: without_null_usage leaves it be
    out = _NULL_USAGE.sub(b"", out)
    return None if out.find(b'"usage"') >= 0 else out


def _loads(data: bytes) -> Any:
    try:
        return loads_json(data)
    except (ValueError, RecursionError):
        return None


def _text_chars(matches: list[bytes]) -> tuple[int, int]:
    joined = b"".join(matches)
    if joined.isascii() and joined.find(b"\\") < 0:  # the usual text: one byte a character
        return len(joined), 0
    chars = non_ascii = 0
    for raw in matches:
        if raw.isascii() and b"\\" not in raw:
            chars += len(raw)
            continue
        text = _loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8", "replace")
        c, n = text_size(text if isinstance(text, str) else "")
        chars += c
        non_ascii += n
    return chars, non_ascii


class StreamReader:
    """Reads one response's events. ``consume`` says whether to drop the event from the caller's
    stream (only the usage-only chunk the monitor itself asked for)."""

    ended: bool
    usage: Usage | None
    model: str | None
    error: ErrorInfo | None
    saw_content: bool
    usage_final: bool  # the usage seen is the call's final count, not a running one
    #: What finds the text of a content event (its matches are counted).
    _text: re.Pattern[bytes] | None = None

    def __init__(self) -> None:
        self.usage_final = False
        self.ended = False
        self.usage = None
        self.model = None
        self.error = None
        self.saw_content = False
        self._chars = 0
        self._non_ascii = 0
        self._uncounted: list[bytes] = []
        self._uncounted_size = 0

    @property
    def output_chars(self) -> int:
        """Characters of output text seen so far."""
        self._count_kept()
        return self._chars

    @property
    def output_non_ascii(self) -> int:
        """Of those, the non-ASCII ones."""
        self._count_kept()
        return self._non_ascii

    def consume(self, event: SSEEvent, drop_usage_chunk: bool) -> bool:
        raise NotImplementedError

    def consume_whole(self, piece: bytes, usage_free: bool = False) -> bool:
        """Read a piece of whole, LF-terminated events at once, when none of them carries usage,
        an error or the end of the message; False (nothing read) when they must be read one by
        one. Most of a stream is plain content, and this reads it without splitting it.
        ``usage_free``: the caller knows ``piece`` holds no ``"usage"`` key."""
        return False

    def special_at(self, piece: bytes) -> int:
        """Where in ``piece`` the first thing ``consume_whole`` will not read starts (-1: none),
        so that the events before it can still be read at once."""
        return 0

    def _count(self, matches: list[bytes]) -> None:
        if matches:
            self.saw_content = True
            chars, non_ascii = _text_chars(matches)
            self._chars += chars
            self._non_ascii += non_ascii

    def _content(self, data: bytes) -> None:
        """Count the text in ``data``; once content was seen (TTFT is set), later."""
        assert self._text is not None
        if not self.saw_content:
            # TTFT needs only to know that text came: it is counted later, with the rest
            if self._text.search(data) is None:
                return
            self.saw_content = True
        self._uncounted.append(data)
        self._uncounted_size += len(data)
        if self._uncounted_size > UNCOUNTED_LIMIT:
            self._count_kept()

    def _count_kept(self) -> None:
        if self._uncounted:
            assert self._text is not None
            for data in self._uncounted:  # one by one, as they were read
                self._count(self._text.findall(data))
            self._uncounted.clear()
            self._uncounted_size = 0

    def _note_model(self, data: bytes) -> None:
        """Take the model name from the first event that names one."""
        if found := _MODEL.search(data):
            self.model = found.group(1).decode("utf-8", "replace")

    def _error_event(self, payload: Any) -> None:
        kind, code, message, _ = error_fields(payload)
        self.error = ErrorInfo("stream_error", code or kind, message)


class OpenAIStreamReader(StreamReader):
    _text = _OPENAI_CONTENT

    def consume(self, event: SSEEvent, drop_usage_chunk: bool) -> bool:
        data = event.data
        if data is None:
            return False
        if data == b"[DONE]" or (data.find(b"[DONE]") >= 0 and data.strip() == b"[DONE]"):
            self.ended = True
            return False
        if self.model is None:
            self._note_model(data)
        if event.name == "error" or (data.find(b'"error"') >= 0 and _ERROR_KEY.match(data)):
            self._error_event(_loads(data))
            return False
        self._content(data)
        if data.find(b'"usage"') >= 0 and _OPENAI_USAGE.search(data):
            chunk = _loads(data)
            if isinstance(chunk, dict):
                usage = openai_usage(chunk.get("usage"))
                if usage is not None:
                    self.usage = usage
                    self.usage_final = True
                    return drop_usage_chunk and chunk.get("choices") == []
        return False

    def consume_whole(self, piece: bytes, usage_free: bool = False) -> bool:
        if (not usage_free and piece.find(b'"usage"') >= 0 and _OPENAI_USAGE.search(piece)) or (
            piece.find(b'"error"') >= 0 or piece.find(b"event:") >= 0
        ):  # what special_at looks for; asked as a yes or no, this is quicker
            return False
        if piece.find(b"[DONE]") >= 0 and _OPENAI_DONE.search(piece):
            self.ended = True
        if self.model is None:
            self._note_model(piece)
        self._content(piece)
        return True

    def special_at(self, piece: bytes) -> int:
        found = [piece.find(b'"error"'), piece.find(b"event:")]
        if piece.find(b'"usage"') >= 0 and (usage := _OPENAI_USAGE.search(piece)):
            found.append(usage.start())
        return min([at for at in found if at >= 0], default=-1)


class AnthropicStreamReader(StreamReader):
    _text = _ANTHROPIC_DELTA_TEXT

    def consume(self, event: SSEEvent, drop_usage_chunk: bool) -> bool:
        data = event.data
        if data is None:
            return False
        name = event.name
        if name == "content_block_delta":
            self._content(data)
        elif name in ("message_start", "message_delta"):
            payload = _loads(data)
            if isinstance(payload, dict):
                if name == "message_start":
                    message = payload.get("message")
                    payload = message if isinstance(message, dict) else {}
                    model = payload.get("model")
                    self.model = model if isinstance(model, str) else self.model
                self.usage = anthropic_usage(payload.get("usage"), self.usage)
                self.usage_final = self.usage_final or name == "message_delta"
        elif name == "message_stop":
            self.ended = True
        elif name == "error":
            self._error_event(_loads(data))
        return False

    def consume_whole(self, piece: bytes, usage_free: bool = False) -> bool:
        if self.special_at(piece) >= 0:
            return False
        if piece.find(b"content_block_delta") >= 0:
            self._content(piece)
        return True

    def special_at(self, piece: bytes) -> int:
        found = _ANTHROPIC_SPECIAL.search(piece)
        return found.start() if found else -1


#: Responses API events whose ``delta`` is output the model generated: text, reasoning (full or
#: summarised), refusals and tool-call arguments. The first one is the stream's first token.
RESPONSES_OUTPUT_DELTAS: Final = frozenset(
    {
        "response.output_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.mcp_call_arguments.delta",
    }
)
#: The events that end a Responses API stream; each carries the final ``response``.
RESPONSES_FINAL_EVENTS: Final = frozenset(
    {"response.completed", "response.failed", "response.incomplete"}
)
_RESPONSES_DELTA_TEXT: Final = re.compile(rb'"delta"\s*:\s*"((?:[^"\\]|\\.)+)"')
_EVENT_TYPE: Final = re.compile(rb'"type"\s*:\s*"([^"\\]{1,100})"')
#: Where an event that must be read alone starts: a final event or an error, by its ``event:``
#: line or by the ``type`` in its data (a stream may send data lines only). Two patterns, each
#: starting with a literal, which the regex engine looks for first: one pattern of both, or one
#: anchored at line starts, tries every position of a piece (about 10x slower on a created or
#: final event, which holds the whole response).
_RESPONSES_SPECIAL_LINE: Final = re.compile(
    rb"event: ?(?:response\.(?:completed|failed|incomplete)|error)\b"
)
_RESPONSES_SPECIAL_TYPE: Final = re.compile(
    rb'"type"\s*:\s*"(?:response\.(?:completed|failed|incomplete)|error)"'
)


def _responses_special(piece: bytes) -> int:
    """Where the first event of ``piece`` that must be read alone starts; -1: none."""
    at = -1
    for found in _RESPONSES_SPECIAL_LINE.finditer(piece):
        start = found.start()
        if start == 0 or piece[start - 1] == 0x0A:  # an ``event:`` field starts its line
            at = start
            break
    if typed := _RESPONSES_SPECIAL_TYPE.search(piece):
        at = typed.start() if at < 0 else min(at, typed.start())
    return at


class ResponsesStreamReader(StreamReader):
    """The Responses API: output deltas are content; ``response.completed`` carries the usage
    and ends the stream (no ``[DONE]`` follows); ``response.failed``, ``response.incomplete``
    and ``error`` events are stream errors, their reason kept as the error code."""

    _text = _RESPONSES_DELTA_TEXT

    def consume(self, event: SSEEvent, drop_usage_chunk: bool) -> bool:
        data = event.data
        if data is None:
            return False
        name = event.name
        if not name or name == "message":  # data lines only: the type is in the payload
            found = _EVENT_TYPE.search(data)
            name = found.group(1).decode("ascii", "replace") if found else ""
        if self.model is None:
            self._note_model(data)
        if name in RESPONSES_OUTPUT_DELTAS:
            self._content(data)
        elif name in RESPONSES_FINAL_EVENTS:
            self._final(name, _loads(data))
        elif name == "error":
            self._error_event(_loads(data))
        return False

    def _final(self, name: str, payload: Any) -> None:
        self.ended = True
        response = payload.get("response") if isinstance(payload, dict) else None
        if not isinstance(response, dict):
            response = {}
        usage = openai_usage(response.get("usage"))
        if usage is not None:
            self.usage = usage
            self.usage_final = True
        if name == "response.failed":
            failure = response.get("error")
            kind, code, message, _ = error_fields({"error": failure})
            self.error = ErrorInfo("stream_error", code or kind or "response_failed", message)
        elif name == "response.incomplete":
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            reason = reason if isinstance(reason, str) and reason else "incomplete"
            self.error = ErrorInfo("stream_error", reason, f"response incomplete: {reason}")

    def _error_event(self, payload: Any) -> None:
        # the Responses API's error event holds code and message at the top level
        if isinstance(payload, dict) and not isinstance(payload.get("error"), dict):
            code = payload.get("code")
            message = payload.get("message")
            self.error = ErrorInfo(
                "stream_error",
                code if isinstance(code, str) else "error",
                message if isinstance(message, str) else None,
            )
        else:
            super()._error_event(payload)

    def consume_whole(self, piece: bytes, usage_free: bool = False) -> bool:
        if _responses_special(piece) >= 0:
            return False
        if self.model is None:
            self._note_model(piece)
        if piece.find(b'"delta"') >= 0:
            self._content(piece)
        return True

    def special_at(self, piece: bytes) -> int:
        return _responses_special(piece)


class OtherStreamReader(StreamReader):
    """A stream of an API we do not know: only the conventional ``[DONE]`` end marker."""

    def consume(self, event: SSEEvent, drop_usage_chunk: bool) -> bool:
        if event.data is not None:
            self.saw_content = True
            if event.data.strip() == b"[DONE]":
                self.ended = True
        return False


def reader_for(api: str, path: str = "") -> StreamReader:
    """The reader of a stream of ``api`` answering a request to ``path``."""
    if api == "openai" and is_responses_path(path):
        return ResponsesStreamReader()
    if api == "openai":
        return OpenAIStreamReader()
    if api == "anthropic":
        return AnthropicStreamReader()
    return OtherStreamReader()
