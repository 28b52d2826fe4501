"""The quick JSON reader used on usage objects and events reads exactly what json.loads reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.capture.bodies import loads_json

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _same(data: bytes) -> None:
    try:
        expected: Any = json.loads(data)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            loads_json(data)
    else:
        assert loads_json(data) == expected


@given(st.dictionaries(st.text(), _values, max_size=5), st.booleans())
def test_objects_read_as_json_loads_reads_them(value: dict[str, Any], compact: bool) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    _same(json.dumps(value, separators=separators, ensure_ascii=False).encode())


@pytest.mark.parametrize(
    "data",
    [
        b'{"usage": {"prompt_tokens": 1}} {"x": 1}',
        b'{"a": 1}garbage}',
        b' {"a": 1}',
        b'{"a": 1} ',
        b"\xef\xbb\xbf{}",
        '{"a": "é"}'.encode("utf-16"),
        b'{"a": "\xff"}',
        b'{"a": "\\ud800"}',
        b"{",
        b"}",
        b"{}",
        b'{"a": NaN}',
        b'{"a": 1,}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_odd_bodies_read_or_fail_as_json_loads_does(data: bytes) -> None:
    _same(data)
