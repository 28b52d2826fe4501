"""Attribution labels: ``with monitor.tags(feature="summarise", user="alice"):``.

Held in a contextvar, so each thread and each asyncio task sees the labels of its own context;
nested blocks add to (and may override) the labels of the enclosing one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Final

MAX_LABELS: Final = 16
MAX_LABEL_CHARS: Final = 200

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_current: ContextVar[Mapping[str, str]] = ContextVar("monitor_labels", default=_EMPTY)


@contextmanager
def tags(**labels: object) -> Iterator[Mapping[str, str]]:
    """Attach labels to every call made inside the block.

    >>> import monitor
    >>> with monitor.tags(feature="summarise", user="alice"):
    ...     pass  # calls made here are stored with both labels
    """
    merged = dict(_current.get())
    for name, value in labels.items():
        merged[name[:MAX_LABEL_CHARS]] = str(value)[:MAX_LABEL_CHARS]
    if len(merged) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels may be in force at once, got {len(merged)}")
    token = _current.set(MappingProxyType(merged))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def current_labels() -> Mapping[str, str]:
    """The labels in force in this context (empty when none)."""
    return _current.get()
