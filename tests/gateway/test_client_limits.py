"""What one client can hold of the gateway is bounded: request bodies, the time to send a head or
the rest of a body (calls at once: test_capacity.py); and an upstream body of no stated length is
relayed as it arrives (finding 6 of issue 12). Every client here is on 127.0.0.1 and every wait is
bounded.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx2
import pytest
from capture import CapturedCalls
from gateway_support import KEY, MESSAGES, GatewayFactory
from recording_upstream import FIRST_PART, RecordingUpstream

from monitor.config import DEFAULT_GATEWAY_MAX_BODY_BYTES

#: Longest a test waits for the gateway to drop a client (the limits it sets are 1 s).
PATIENCE_S = 4.0
HEAD = (
    "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S)
    sock.settimeout(0.2)
    return sock


def open_for(sock: socket.socket, seconds: float, trickle: bytes = b"") -> tuple[float, bytes]:
    """Keep ``sock`` open up to ``seconds``, sending one byte of ``trickle`` every 0.2 s; the
    time at which the gateway closed it (``inf`` if it did not) and what it sent before."""
    started = time.monotonic()
    received = b""
    while (elapsed := time.monotonic() - started) < seconds:
        if trickle:
            try:
                sock.sendall(trickle[:1])
            except OSError:
                return elapsed, received
            trickle = trickle[1:]
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return elapsed, received
        if not data:
            return elapsed, received
        received += data
    return float("inf"), received


def test_the_default_body_limit_is_32_mib() -> None:
    assert DEFAULT_GATEWAY_MAX_BODY_BYTES == 32 * 1024 * 1024


def test_a_body_over_the_limit_is_a_413_and_never_forwarded(
    gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    gateway = gateway_for(recorder=captured, gateway_max_body_bytes=4096)
    padding = "x" * 5000
    body = {"model": "LongCat-Flash-Chat", "messages": MESSAGES, "user": padding}
    with httpx2.Client() as client:
        stated = client.post(
            gateway.openai_base_url + "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {KEY}"},
        )
        unstated = client.post(  # chunked: no Content-Length, the gateway counts as it reads
            gateway.anthropic_base_url + "/v1/messages",
            content=iter([json.dumps(body).encode()[i : i + 1000] for i in range(0, 6000, 1000)]),
            headers={"x-api-key": KEY, "content-type": "application/json"},
        )
        small = client.post(
            gateway.openai_base_url + "/chat/completions",
            json={"model": "LongCat-Flash-Chat", "messages": MESSAGES},
            headers={"authorization": f"Bearer {KEY}"},
        )
    assert stated.status_code == 413
    error = stated.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert "4,096 bytes" in error["message"]
    assert unstated.status_code == 413
    assert unstated.json()["type"] == "error"
    assert unstated.json()["error"]["type"] == "request_too_large"
    assert small.status_code == 200
    assert len(captured.records) == 1  # only the call within the limit went upstream


def test_a_client_trickling_its_head_is_dropped(gateway_for: GatewayFactory) -> None:
    gateway = gateway_for(gateway_header_timeout_s=1.0)
    with connect(gateway.port) as sock:
        sock.sendall(HEAD.encode())
        closed_at, answer = open_for(sock, PATIENCE_S, trickle=b"X-Slow: " + b"a" * 100)
    assert closed_at < 2.5, "the gateway still held a connection whose head never ended"
    assert answer == b""


def test_a_silent_connection_is_dropped_after_the_head_timeout(
    gateway_for: GatewayFactory,
) -> None:
    gateway = gateway_for(gateway_header_timeout_s=1.0)
    with connect(gateway.port) as sock:
        closed_at, _ = open_for(sock, PATIENCE_S)
    assert closed_at < 2.5


def test_a_body_that_stops_coming_ends_the_connection_and_is_not_forwarded(
    gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    gateway = gateway_for(recorder=captured, gateway_idle_timeout_s=1.0)
    with connect(gateway.port) as sock:
        sock.sendall((HEAD + "Content-Length: 1000\r\n\r\n").encode() + b'{"model": "LongC')
        closed_at, answer = open_for(sock, PATIENCE_S)
    assert closed_at < 2.5, "the gateway still waited for a body that had stopped coming"
    assert answer.startswith(b"HTTP/1.1 408 ") or answer == b""
    assert captured.records == []


@pytest.fixture
def unframed() -> Iterator[RecordingUpstream]:
    with RecordingUpstream.running(unframed=True, rest_bytes=1024 * 1024) as running:
        yield running


def test_an_upstream_body_of_no_stated_length_is_relayed_as_it_arrives(
    gateway_for: GatewayFactory, unframed: RecordingUpstream, captured: CapturedCalls
) -> None:
    gateway = gateway_for(recorder=captured, upstream_url=unframed.url)
    with connect(gateway.port) as sock:
        sock.sendall(
            b"GET /openai/v1/files/f-1/content HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {KEY}\r\n\r\n".encode()
        )
        received = b""
        deadline = time.monotonic() + PATIENCE_S
        while FIRST_PART not in received and time.monotonic() < deadline:
            try:
                received += sock.recv(65536)
            except TimeoutError:
                continue
        first_part_arrived = FIRST_PART in received
        unframed.release.set()
        sock.settimeout(PATIENCE_S)
        while not received.endswith(b'"}\r\n0\r\n\r\n'):
            data = sock.recv(1024 * 1024)
            if not data:
                break
            received += data
    assert first_part_arrived, "the gateway held the body until the upstream had sent all of it"
    head, _, _ = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert received.endswith(b'"}\r\n0\r\n\r\n')
    assert captured.only().status_code == 200


def test_a_client_that_stops_reading_is_dropped(
    gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    size = 32 * 1024 * 1024  # more than the socket buffers on both sides hold
    with RecordingUpstream.running(unframed=True, rest_bytes=size) as upstream:
        gateway = gateway_for(
            recorder=captured, upstream_url=upstream.url, gateway_idle_timeout_s=1.0
        )
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            sock.settimeout(PATIENCE_S)
            sock.connect(("127.0.0.1", gateway.port))
            sock.sendall(
                b"GET /openai/v1/files/f-1/content HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                + f"Authorization: Bearer {KEY}\r\n\r\n".encode()
            )
            upstream.release.set()
            time.sleep(3.0)  # reading nothing, well past the idle timeout
            received = 0
            try:
                while data := sock.recv(1024 * 1024):
                    received += len(data)
            except OSError:
                pass  # reset: the gateway dropped what it still held for us
    assert received < size
    assert captured.only().error_type is not None  # recorded as a call the client left
