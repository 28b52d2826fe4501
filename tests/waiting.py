"""``eventually``: wait for something another thread or process does, or fail the test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Long enough for a loaded CI machine; a passing test waits only as long as its condition takes.
DEFAULT_TIMEOUT_S = 30.0


def eventually(
    condition: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT_S,
    *,
    interval: float = 0.02,
    what: str | Callable[[], str] = "the condition to hold",
) -> T:
    """Call ``condition`` until it returns something true, and return that; after ``timeout``
    seconds, fail the test. ``what`` names what was awaited (a callable is asked at the
    timeout, to describe the state then).

    >>> eventually(lambda: 42)
    42
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"waited {timeout:g} s for {described} (last: {value!r})")
        time.sleep(interval)
    return value
