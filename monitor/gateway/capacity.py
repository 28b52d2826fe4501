"""The gateway's cap on calls at once (``MONITOR_GATEWAY_MAX_CONCURRENCY``) and its answer past it:
a 503 in the shape of the API called, with ``retry-after``, the connection closed.

The cap counts calls being served, streams until they end; idle kept-alive connections do not
count. The server's own, higher limit on connections (uvicorn's ``limit_concurrency``) hands its
requests to the app marked :data:`~monitor.gateway.protocol.OVER_CONNECTION_LIMIT`; they get the
same answer. A refused call never reaches LongCat and is not recorded.

>>> cap = CallCap(1)
>>> cap.admit({"path": "/openai/v1/models"}) is None, cap.calls
(True, 1)
>>> cap.admit({"path": "/anthropic/v1/messages"}).body["error"]["type"]
'overloaded_error'
"""

from __future__ import annotations

import logging
from typing import Any, Final

from monitor.gateway.errors import GATEWAY_OVERLOADED, ErrorAnswer, gateway_error
from monitor.gateway.protocol import OVER_CONNECTION_LIMIT

#: Seconds a call refused at the cap is told to wait before it tries again (the SDKs honour
#: ``retry-after``): calls end all the time, so soon.
OVERLOADED_RETRY_AFTER_S: Final = 1

logger = logging.getLogger("monitor.gateway")


class CallCap:
    """The calls being served, and the refusal of one past the cap. Used from the event loop's
    thread only, so the counts need no lock."""

    def __init__(self, max_calls: int) -> None:
        self.max_calls = max_calls
        self.calls = 0
        #: calls refused since the last one let in
        self.refused = 0

    def admit(self, scope: dict[str, Any]) -> ErrorAnswer | None:
        """Count the call of ``scope`` in (then :meth:`release` it when it ends) and return None,
        or return its 503."""
        extensions = scope.get("extensions")
        if self.calls >= self.max_calls or (extensions and OVER_CONNECTION_LIMIT in extensions):
            return self._refusal(scope)
        if self.refused:
            logger.warning("longcat-monitor gateway: calls let in again; %d refused", self.refused)
            self.refused = 0
        self.calls += 1
        return None

    def release(self) -> None:
        self.calls -= 1

    def _refusal(self, scope: dict[str, Any]) -> ErrorAnswer:
        if self.calls >= self.max_calls:
            held = f"{self.max_calls:,} calls at once, its limit (MONITOR_GATEWAY_MAX_CONCURRENCY)"
        else:  # the server's own limit, which idle connections count toward too
            held = f"{scope['extensions'][OVER_CONNECTION_LIMIT]:,} connections at once, its limit"
        if not self.refused:
            logger.warning("longcat-monitor gateway: serving %s; new calls get a 503", held)
        self.refused += 1
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        return gateway_error(
            raw_path.decode("latin-1"),
            GATEWAY_OVERLOADED,
            f"This longcat-monitor gateway is serving {held}; retry in a moment.",
            # closed: one connection fewer to hold (a body not read yet is drained first)
            headers={"retry-after": str(OVERLOADED_RETRY_AFTER_S), "connection": "close"},
        )
