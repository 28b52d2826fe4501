"""A body the gateway answers without forwarding (over the size limit) is read and discarded after
the answer, within bounds, so a client that sends all of it before reading (no
``Expect: 100-continue``) reads the 413 instead of a reset connection. Raw sockets on 127.0.0.1,
each wait bounded.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from capture import CapturedCalls
from gateway_support import KEY, GatewayFactory

from monitor.gateway.protocol import GatewayHttpProtocol

LIMIT = 64 * 1024
#: Far over the limit, and over what the socket buffers on both sides hold: the client cannot
#: finish sending unless the gateway reads on after its answer.
BIG = 16 * 1024 * 1024
PATIENCE_S = 10.0
PIECE = 64 * 1024


def head(path: str, framing: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def chunked(size: int) -> bytes:
    piece = b"%x\r\n" % PIECE + b"x" * PIECE + b"\r\n"
    return piece * (size // PIECE) + b"0\r\n\r\n"


def send_then_read(port: int, request: bytes) -> bytes:
    """Send ``request`` whole, as a client that reads only afterwards does, then read until the
    gateway closes; raises the ``OSError`` that a reset gives the client."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S) as sock:
        sock.sendall(request)
        received = b""
        while data := sock.recv(65536):
            received += data
    return received


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/openai/v1/chat/completions", "/anthropic/v1/messages"])
def test_a_client_sending_a_large_body_in_one_go_reads_the_413(
    gateway_for: GatewayFactory, captured: CapturedCalls, framing: str, path: str
) -> None:
    gateway = gateway_for(recorder=captured, gateway_max_body_bytes=LIMIT)
    if framing == "chunked":
        request = head(path, "Transfer-Encoding: chunked") + chunked(BIG)
    else:
        request = head(path, f"Content-Length: {BIG}") + b"x" * BIG
    for _ in range(3):  # a reset is a race: one lucky pass proves little
        answer = send_then_read(gateway.port, request)
        status, _, body = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in status.lower()
        error = json.loads(body)
        if path.startswith("/anthropic/"):
            assert error["error"]["type"] == "request_too_large"
        else:
            assert error["error"]["code"] == "request_too_large"
    assert captured.records == []


def test_after_the_413_the_rest_of_a_body_is_read_for_a_bounded_time(
    gateway_for: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GatewayHttpProtocol, "drain_timeout_s", 1.0)
    gateway = gateway_for(gateway_max_body_bytes=LIMIT)
    path = "/openai/v1/chat/completions"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=PATIENCE_S) as sock:
        sock.sendall(head(path, "Transfer-Encoding: chunked") + chunked(2 * LIMIT)[:-5])
        started = time.monotonic()
        received = b""
        try:  # a chunk every 0.1 s, never the last one
            while time.monotonic() - started < PATIENCE_S:
                sock.sendall(b"1\r\nx\r\n")
                sock.settimeout(0.1)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                received += data
        except OSError:
            pass  # reset: the gateway stopped reading
        closed_after = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 413 ")
    assert closed_after < 3.0, "the gateway kept reading a body it had refused"


def test_a_stated_length_past_what_is_read_after_the_answer_closes_at_once(
    gateway_for: GatewayFactory,
) -> None:
    gateway = gateway_for(gateway_max_body_bytes=LIMIT)
    stated = GatewayHttpProtocol.drain_max_bytes + 1
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=PATIENCE_S) as sock:
        sock.sendall(head("/anthropic/v1/messages", f"Content-Length: {stated}") + b"{")
        started = time.monotonic()
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except OSError:
            pass
        closed_after = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 413 ")
    assert closed_after < 1.0, "the gateway waited for a body it would never read whole"


def test_a_refusal_sent_before_the_body_keeps_the_connection_for_the_next_call(
    gateway_for: GatewayFactory,
) -> None:
    gateway = gateway_for(gateway_token="t" * 24)  # no token sent: a 401, the body unread
    body = b"x" * (4 * 1024 * 1024)
    request = head("/openai/v1/chat/completions", f"Content-Length: {len(body)}") + body
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=PATIENCE_S) as sock:
        sock.sendall(request)
        received = b""
        while received.count(b"HTTP/1.1 401 ") < 1 or not received.endswith(b"}"):
            received += sock.recv(65536)
        sock.sendall(request)  # the same connection: the rest of the first body was discarded
        while received.count(b"HTTP/1.1 401 ") < 2 or not received.endswith(b"}"):
            data = sock.recv(65536)
            assert data, "the gateway closed a connection it had kept alive"
            received += data


def test_a_connection_left_idle_after_a_discarded_body_is_closed(
    gateway_for: GatewayFactory,
) -> None:
    gateway = gateway_for(gateway_token="t" * 24, gateway_header_timeout_s=1.0)
    body = b"x" * (4 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=PATIENCE_S) as sock:
        sock.sendall(head("/openai/v1/chat/completions", f"Content-Length: {len(body)}") + body)
        started = time.monotonic()
        received = b""
        while data := sock.recv(65536):  # the 401, then silence until the gateway closes
            received += data
        closed_after = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 401 ")
    assert closed_after < 3.0, "an idle connection outlived the header timeout"
