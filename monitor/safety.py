"""The one place where the monitor's own failures are caught and logged.

Nothing the monitor does may raise into the application it watches. Code that could fail runs
inside ``with swallow("what it was doing"):``; the first failure of each kind is logged with its
traceback, later ones of the same kind only counted, so a broken database does not flood the log.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from monitor.scrub import redact

logger = logging.getLogger("monitor")

_lock = threading.Lock()
_failures: Counter[str] = Counter()


@contextmanager
def swallow(kind: str) -> Iterator[None]:
    """Run the block; log and count any exception instead of letting it escape."""
    try:
        yield
    except Exception as exc:  # the point of this function
        report_failure(kind, exc)


def report_failure(kind: str, exc: BaseException) -> None:
    """Log ``exc`` the first time ``kind`` fails; afterwards only count it."""
    with _lock:
        _failures[kind] += 1
        first = _failures[kind] == 1
    if first:
        # Formatted here and redacted: an exception's text may quote a header or a key.
        logger.warning(
            "longcat-monitor: %s failed (%s: %s); the app is unaffected, "
            "later failures of this kind are counted, not logged\n%s",
            kind,
            type(exc).__name__,
            redact(str(exc)),
            redact("".join(traceback.format_exception(exc)).rstrip()),
        )


def failure_counts() -> dict[str, int]:
    """How many times each kind of internal failure has happened in this process."""
    with _lock:
        return dict(_failures)
