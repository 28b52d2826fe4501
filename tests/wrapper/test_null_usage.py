"""The null usages the monitor's own request for usage adds to every chunk are taken out the
same way whether a chunk is kept back with its batch or read alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.capture.streams import null_usage_removed, without_null_usage

#: Pieces that make usage keys, null or not, and their near misses likely when strung together.
_pieces = st.sampled_from(
    [
        b'"usage"',
        b'"usage":null',
        b',"usage":null}',
        b'"usage": null',
        b', "usage" : null ,',
        b'"usage":{"prompt_tokens":1}',
        b'"usage":nullx',
        b",",
        b"}",
        b"{",
        b" ",
        b"null",
        b'"choices":[]',
        b"data: ",
        b"\n\n",
    ]
)


def _reference(raw: bytes) -> bytes | None:
    out = without_null_usage(raw)
    return out if out.find(b'"usage"') < 0 else None


@given(st.lists(_pieces, max_size=10).map(b"".join))
def test_null_usage_removed_is_without_null_usage_where_no_usage_key_is_left(raw: bytes) -> None:
    if raw.find(b'"usage"') >= 0:  # what it is asked about
        assert null_usage_removed(raw) == _reference(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'data: {"choices":[{"delta":{}}],"usage":null}\n\n',
            b'data: {"choices":[{"delta":{}}]}\n\n',
        ),
        (b'data: {"usage": null, "choices":[]}\n\n', b'data: {"choices":[]}\n\n'),
        (b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n', None),
        (b'data: {"usage":null,"x":{"usage":{"total_tokens":2}}}\n\n', None),
    ],
)
def test_null_usage_removed(raw: bytes, expected: bytes | None) -> None:
    assert null_usage_removed(raw) == expected
