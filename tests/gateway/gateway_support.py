"""Names the gateway tests share (imported by name: pytest puts this folder on the path)."""

from __future__ import annotations

import re
from collections.abc import Callable

from monitor.gateway import RunningGateway

KEY = "sk-gateway-test-0a1b2c3d4e5f-WXYZ"
MESSAGES = [{"role": "user", "content": "How much of my quota is left today?"}]
_IDS = re.compile(rb'(chatcmpl-|msg_|req_)[0-9a-f]+|"created":\s*\d+')

GatewayFactory = Callable[..., RunningGateway]


def masked(body: bytes) -> bytes:
    """``body`` with the ids and timestamps the simulator makes afresh for every call masked."""
    return _IDS.sub(b"<id>", body)
