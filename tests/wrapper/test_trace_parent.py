"""Reading a W3C ``traceparent`` header value (Trace Context level 1, section 3.2): what names a
parent span, and what is ignored."""

from __future__ import annotations

import pytest

from monitor.capture.trace_parent import header_trace_parent, parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID, (int(TRACE, 16), int(SPAN, 16), 1)),
        (f"00-{TRACE}-{SPAN}-00", (int(TRACE, 16), int(SPAN, 16), 0)),  # not sampled
        (f" {VALID}\t", (int(TRACE, 16), int(SPAN, 16), 1)),  # optional white space around
        # a later version: its first four fields are read, and only the sampled flag of its flags
        (f"cc-{TRACE}-{SPAN}-03-what-comes-next", (int(TRACE, 16), int(SPAN, 16), 1)),
        (f"01-{TRACE}-{SPAN}-02", (int(TRACE, 16), int(SPAN, 16), 0)),
    ],
)
def test_a_valid_value_names_its_trace_span_and_flags(
    value: str, expected: tuple[int, int, int]
) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        VALID.upper(),  # hex digits are lower-case
        f"00-{TRACE.upper()}-{SPAN}-01",
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"0-{TRACE}-{SPAN}-01",
        f"0g-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",  # an all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # an all-zero parent id
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}-{SPAN}-1",
        f"00-{TRACE}-{SPAN}-0x",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}1-01",
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-01,00-{TRACE}-{SPAN}-01",  # two values folded into one
        f"cc-{TRACE}-{SPAN}-01x",  # a later version: what follows the flags starts with "-"
        f"00-+{TRACE[1:]}-{SPAN}-01",  # int() would take a sign
        f"00-{TRACE[:8]}_{TRACE[9:]}-{SPAN}-01",  # or an underscore
        f"00-{TRACE}-{SPAN}-0１",  # or a non-ASCII digit
    ],
)
def test_an_invalid_value_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_only_a_single_header_names_a_parent() -> None:
    assert header_trace_parent([VALID]) == (int(TRACE, 16), int(SPAN, 16), 1)
    assert header_trace_parent([]) is None
    assert header_trace_parent([VALID, VALID]) is None  # repeated: ambiguous, so ignored
    assert header_trace_parent(["garbage"]) is None
