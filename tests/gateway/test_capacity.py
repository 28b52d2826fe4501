"""Calls past ``MONITOR_GATEWAY_MAX_CONCURRENCY`` get a 503 in the error shape of the API called,
which the SDKs read as they read LongCat's own, with a ``retry-after``; they are not recorded.
The calls held open are real streams through the gateway, slowed down by the simulator.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import anthropic
import httpx2
import openai
from capture import CapturedCalls
from gateway_support import KEY, MESSAGES, GatewayFactory

from monitor.gateway import RunningGateway

CAP = 2
#: How long each held stream waits before its first event.
HOLD_MS = 3000
PATIENCE_S = 15.0


@contextmanager
def streams_in_flight(gateway: RunningGateway, count: int) -> Iterator[list[int]]:
    """``count`` streamed calls through ``gateway``, each answered (its head relayed) and still
    going when the block starts; their statuses once the block ends."""
    statuses: list[int] = []
    answered = threading.Barrier(count + 1, timeout=PATIENCE_S)

    def stream() -> None:
        with (
            httpx2.Client(timeout=PATIENCE_S) as client,
            client.stream(
                "POST",
                gateway.openai_base_url + "/chat/completions",
                json={"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": True},
                headers={"authorization": f"Bearer {KEY}", "x-simulate-delay-ms": str(HOLD_MS)},
            ) as response,
        ):
            statuses.append(response.status_code)
            answered.wait()
            response.read()

    threads = [threading.Thread(target=stream) for _ in range(count)]
    for thread in threads:
        thread.start()
    answered.wait()
    try:
        yield statuses
    finally:
        for thread in threads:
            thread.join(PATIENCE_S)


def test_calls_past_the_cap_get_a_503_in_the_shape_of_their_api(
    gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    gateway = gateway_for(recorder=captured, gateway_max_concurrency=CAP)
    with (
        openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0) as oai,
        anthropic.Anthropic(base_url=gateway.anthropic_base_url, api_key=KEY, max_retries=0) as ant,
    ):
        with streams_in_flight(gateway, CAP) as statuses:
            assert statuses == [200] * CAP  # the cap itself is served
            try:
                oai.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
            except openai.InternalServerError as exc:
                refused_openai = exc
            try:
                ant.messages.create(model="LongCat-2.0", max_tokens=64, messages=MESSAGES)
            except anthropic.InternalServerError as exc:
                refused_anthropic = exc
        served = oai.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)

    assert refused_openai.status_code == 503
    error = refused_openai.body
    assert isinstance(error, dict)  # the SDK found the "error" object and unwrapped it
    assert (error["type"], error["code"]) == ("server_error", "gateway_overloaded")
    assert "MONITOR_GATEWAY_MAX_CONCURRENCY" in error["message"]
    assert refused_openai.response.headers["retry-after"] == "1"
    assert refused_anthropic.status_code == 503
    assert refused_anthropic.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": error["message"]},
    }
    assert refused_anthropic.response.headers["retry-after"] == "1"
    assert served.choices
    # the held streams and the call after them; the refused calls never reached LongCat
    assert [r.stream for r in captured.records] == [True] * CAP + [False]


def test_an_sdk_retries_a_call_refused_at_the_cap(
    gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    gateway = gateway_for(recorder=captured, gateway_max_concurrency=1)
    with (
        openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=5) as client,
        streams_in_flight(gateway, 1),
    ):
        started = time.monotonic()
        reply = client.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
        waited = time.monotonic() - started
    assert reply.choices
    assert waited > 1.0  # it was refused, and retried after the retry-after
    assert len(captured.records) == 2


def _status(port: int, api: str = "openai") -> tuple[int, bytes]:
    """Status and body of a model list asked for on a connection of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S) as sock:
        sock.sendall(
            f"GET /{api}/v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {KEY}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while data := sock.recv(65536):
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_idle_connections_are_not_calls(gateway_for: GatewayFactory) -> None:
    gateway = gateway_for(gateway_max_concurrency=CAP)
    with ExitStack() as held:
        for _ in range(CAP):
            held.enter_context(socket.create_connection(("127.0.0.1", gateway.port)))
        time.sleep(0.2)
        assert _status(gateway.port)[0] == 200


def test_past_the_connection_backstop_the_503_has_the_api_shape(
    gateway_for: GatewayFactory,
) -> None:
    gateway = gateway_for(gateway_max_concurrency=CAP)
    with ExitStack() as held:
        for _ in range(4 * CAP):  # idle: no call in flight, only connections
            held.enter_context(socket.create_connection(("127.0.0.1", gateway.port)))
        time.sleep(0.2)
        status, body = _status(gateway.port, "anthropic")
    assert status == 503
    assert body.startswith(b'{"type":"error","error":{"type":"overloaded_error"')
    time.sleep(0.2)
    assert _status(gateway.port)[0] == 200
