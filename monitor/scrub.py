"""Pure: every string of a call record made safe to store, log, spool and e-mail, once.

What a record holds comes from traffic (a model name, a label, an upstream error message, a
header), so any of it can be odd or hostile. :func:`scrub_record` is applied where a record is
finished (:mod:`monitor.capture.observer`, the one place that knows the call's own key) and where
one comes back from disk (:mod:`monitor.recording.spool`): NUL characters removed, unpaired
surrogates replaced, each field cut to a bounded length, and anything shaped like a key replaced
by ``[redacted]``: ``sk-…``/``ak_…`` keys, ``Bearer`` and ``x-api-key`` values, and the call's own
key in any form (as sent, URL-encoded, base64, or any run of :data:`KEY_FRAGMENT_CHARS` of it).

It lives beside :mod:`monitor.records` because both the capture side (which has the key) and the
recording side (which validates spooled records) use it, and neither may import the other.

>>> from datetime import UTC, datetime
>>> record = CallRecord(datetime.now(UTC), "openai", "/v1/x", model="m\\x00" + "x" * 300)
>>> len(scrub_record(record).model)
200
>>> redact("Incorrect API key provided: sk-proj-abcdefghijklmnop1234")
'Incorrect API key provided: [redacted]'
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable
from typing import Final

from monitor.records import CallRecord

#: Longest model, endpoint, error code, request id, method, key hint, label name or value.
MAX_FIELD_CHARS: Final = 200
#: Longest error message.
MAX_MESSAGE_CHARS: Final = 500
#: Most labels a record keeps (the first ones).
MAX_LABELS: Final = 16
#: A run of this many characters of the call's own key is a leak, wherever it appears.
KEY_FRAGMENT_CHARS: Final = 10
REDACTED: Final = "[redacted]"

#: The string fields of a record that traffic (or a spool file) can fill, and how long each may
#: be. The others (``api``, ``key_id``, ``usage_source``, ``source``, ``event_id``) are set by
#: the monitor itself and checked when read back from a spool.
_FIELD_LIMITS: Final = (
    ("endpoint", MAX_FIELD_CHARS),
    ("method", MAX_FIELD_CHARS),
    ("model", MAX_FIELD_CHARS),
    ("key_hint", MAX_FIELD_CHARS),
    ("error_type", MAX_FIELD_CHARS),
    ("error_code", MAX_FIELD_CHARS),
    ("error_message", MAX_MESSAGE_CHARS),
    ("request_id", MAX_FIELD_CHARS),
    ("client", MAX_FIELD_CHARS),
)
#: The fields whose values repeat from call to call (and labels): their cleaned values are
#: remembered, so the caller's thread does not search the same model name on every call.
_REPEATING: Final = frozenset({"endpoint", "method", "model", "key_hint", "client"})
#: How many cleaned values are remembered (per key, and for records without one).
_MEMO_SIZE: Final = 512
#: Text longer than this many times its limit is cut before it is searched (bounded work).
_SEARCH_FACTOR: Final = 4

#: Key-shaped text: ``Bearer``/``x-api-key`` values (the name kept) and ``sk-``/``ak_`` keys.
_KEY_SHAPES: Final = (
    r"(?i:(?P<name>\bbearer\s+|\bx-api-key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=\-]{8,})"
    r"|(?<![A-Za-z0-9])(?:sk|ak)[-_][A-Za-z0-9._\-]{16,}"
)
_GENERIC: Final = re.compile(_KEY_SHAPES)
#: Characters a key (or its URL/base64 form) is made of: a match grows to the whole run.
_TOKEN_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/=%"
)


class KeyForms:
    """The forms in which a call's own key(s) could appear in text, as one search.

    Built once per key (the transport caches it); its repr never shows the key.
    """

    __slots__ = ("_memo", "_pattern")

    def __init__(self, raw_keys: Iterable[str]) -> None:
        forms: set[str] = set()
        for raw in raw_keys:
            key = raw.strip()
            if not key:
                continue
            forms.update(_forms_of(key))
        alternatives = sorted(forms, key=len, reverse=True)
        own = "|".join(re.escape(form) for form in alternatives)
        self._pattern = re.compile(f"(?P<own>{own})|{_KEY_SHAPES}" if own else _KEY_SHAPES)
        self._memo: dict[tuple[str, int], str] = {}

    def __repr__(self) -> str:
        return "KeyForms(<hidden>)"

    def redact(self, text: str) -> str:
        return _redact(self._pattern, text)


def _forms_of(key: str) -> set[str]:
    raw = key.encode("utf-8", "replace")
    forms = {
        key,
        urllib.parse.quote(key, safe=""),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    if len(key) > KEY_FRAGMENT_CHARS:
        forms.update(
            key[i : i + KEY_FRAGMENT_CHARS] for i in range(len(key) - KEY_FRAGMENT_CHARS + 1)
        )
    return {form for form in forms if form}


def redact(text: str, key: KeyForms | None = None) -> str:
    """``text`` with every key-shaped part (and ``key``'s forms) replaced by ``[redacted]``."""
    return key.redact(text) if key is not None else _redact(_GENERIC, text)


def _redact(pattern: re.Pattern[str], text: str) -> str:
    if pattern.search(text) is None:
        return text
    own = "own" in pattern.groupindex
    out: list[str] = []
    end = 0
    for match in pattern.finditer(text):
        start, stop = match.span()
        if start < end:
            continue
        name = match.group("name")
        if name:
            start += len(name)
        elif own and match.group("own"):
            # a fragment of the key: the whole run of key characters around it goes
            while start > end and text[start - 1] in _TOKEN_CHARS:
                start -= 1
            while stop < len(text) and text[stop] in _TOKEN_CHARS:
                stop += 1
        out.append(text[end:start])
        out.append(REDACTED)
        end = stop
    out.append(text[end:])
    return "".join(out)


_memo_without_key: dict[tuple[str, int], str] = {}


def _clean_repeating(text: str, limit: int, key: KeyForms | None) -> str:
    """:func:`clean_text` of a value that repeats from call to call, remembered."""
    memo = key._memo if key is not None else _memo_without_key
    known = memo.get((text, limit))
    if known is None:
        known = clean_text(text, limit, key)
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[text, limit] = known
    return known


def clean_text(text: str, limit: int, key: KeyForms | None = None) -> str:
    """``text`` without NUL, with unpaired surrogates replaced, key-shaped parts redacted, and
    at most ``limit`` characters."""
    if len(text) > limit * _SEARCH_FACTOR:
        text = text[: limit * _SEARCH_FACTOR]
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # surrogates: a pair becomes its character, a lone one U+FFFD
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = redact(text, key)
    return text if len(text) <= limit else text[:limit]


def scrub_record(record: CallRecord, key: KeyForms | None = None) -> CallRecord:
    """Make every string of ``record`` safe (see the module docstring); in place, and returned.

    Idempotent: a scrubbed record comes out of it unchanged.
    """
    for name, limit in _FIELD_LIMITS:
        value = getattr(record, name)
        if value is not None:
            if not isinstance(value, str):
                value = str(value)
            clean = _clean_repeating if name in _REPEATING else clean_text
            setattr(record, name, clean(value, limit, key))
    labels = record.labels
    if labels:
        record.labels = {
            _clean_repeating(str(name), MAX_FIELD_CHARS, key): _clean_repeating(
                str(value), MAX_FIELD_CHARS, key
            )
            for name, value in list(labels.items())[:MAX_LABELS]
        }
    return record
