"""Names the gateway tests share (imported by name: pytest puts this folder on the path)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx2

from monitor.gateway import RunningGateway

OPENAI = "/openai/v1/chat/completions"
ANTHROPIC = "/anthropic/v1/messages"
KEY = "sk-gateway-test-0a1b2c3d4e5f-WXYZ"
MESSAGES = [{"role": "user", "content": "How much of my quota is left today?"}]
_IDS = re.compile(rb'(chatcmpl-|msg_|req_)[0-9a-f]+|"created":\s*\d+')

GatewayFactory = Callable[..., RunningGateway]


def masked(body: bytes) -> bytes:
    """``body`` with the ids and timestamps the simulator makes afresh for every call masked."""
    return _IDS.sub(b"<id>", body)


def call(client: httpx2.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """(status, content-type, content-encoding, decoded body, the error that ended it if any)."""
    payload = {"model": "LongCat-Flash-Chat", "max_tokens": 64, "messages": MESSAGES, **body}
    received = bytearray()
    error = None
    with client.stream(
        "POST", url, json=payload, headers={"authorization": f"Bearer {KEY}", **headers}
    ) as response:
        try:
            for chunk in response.iter_bytes():
                received += chunk
        except httpx2.TransportError as exc:
            error = type(exc).__name__
        return (
            response.status_code,
            response.headers.get("content-type"),
            response.headers.get("content-encoding"),
            masked(bytes(received)),
            error,
        )
