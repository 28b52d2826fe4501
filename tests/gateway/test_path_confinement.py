"""The gateway forwards ``/openai/…`` and ``/anthropic/…`` only, and exactly the path it checked
(finding 5 of issue 12: ``/openai/../admin/secret`` reached the upstream as ``/admin/secret``)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from capture import CapturedCalls
from gateway_support import KEY, GatewayFactory
from recording_upstream import RecordingUpstream

from monitor.gateway import RunningGateway

ESCAPES = [
    "/openai/../admin/secret",
    "/anthropic/../../etc/passwd",
    "/openai/v1/./models",
    "/openai/v1/models/.",
    "/openai/%2e%2e/admin",
    "/openai/%2E%2E/admin",
    "/openai/.%2e/admin",
    "/anthropic/%2e/v1/messages",
    "/openai/v1/..%2fadmin",
    "/openai/v1%2F..%2F..%2Fadmin",
    "/openai/%252e%252e/admin",
    "/openai/v1/..%5cadmin",
    "/openai/v1/..\\..\\admin",
]


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream.running() as running:
        yield running


@pytest.fixture
def guarded(
    gateway_for: GatewayFactory, upstream: RecordingUpstream, captured: CapturedCalls
) -> RunningGateway:
    return gateway_for(recorder=captured, upstream_url=upstream.url)


def raw_request(gateway: RunningGateway, target: str) -> tuple[int, bytes]:
    """``GET target`` sent as it is written (no client-side clean-up of the path)."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.putheader("Authorization", f"Bearer {KEY}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("target", ESCAPES)
def test_a_path_with_dot_segments_is_refused_and_never_forwarded(
    guarded: RunningGateway, upstream: RecordingUpstream, captured: CapturedCalls, target: str
) -> None:
    status, body = raw_request(guarded, target)
    assert status == 400, body
    answer = json.loads(body)
    if target.startswith("/anthropic/"):
        assert answer["type"] == "error"
        assert answer["error"]["type"] == "invalid_request_error"
    else:
        assert answer["error"]["code"] == "invalid_path"
    assert upstream.targets == [] and captured.records == []


def test_a_prefix_spelled_with_escapes_is_not_a_proxied_path(
    guarded: RunningGateway, upstream: RecordingUpstream
) -> None:
    status, _ = raw_request(guarded, "/%6Fpenai/v1/models")
    assert status == 404
    assert upstream.targets == []


@pytest.mark.parametrize(
    "target",
    [
        "/openai/v1/models",
        "/openai/v1/models/LongCat%2DFlash%20Chat",
        "/openai/v1/models?after=..%2F..&limit=5",
        "/anthropic/v1/models/..claude..",
    ],
)
def test_a_clean_path_reaches_the_upstream_byte_for_byte(
    guarded: RunningGateway, upstream: RecordingUpstream, target: str
) -> None:
    status, _ = raw_request(guarded, target)
    assert status == 200
    assert upstream.targets == [target]
