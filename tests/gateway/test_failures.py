"""Upstream down or silent: 502/504 in the API's own shape, recorded; the gateway's access token."""

from __future__ import annotations

import socket

import anthropic
import httpx2
import openai
import pytest
from capture import CapturedCalls
from gateway_support import KEY, MESSAGES, GatewayFactory

from monitor.gateway.upstream import UpstreamTransport

TOKEN = "gw-token-0123456789abcdef"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_upstream_down_is_a_502_in_each_apis_shape(
    gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    gateway = gateway_for(recorder=captured, upstream_url=f"http://127.0.0.1:{closed_port()}")
    with httpx2.Client() as client:
        oai = client.post(
            gateway.openai_base_url + "/chat/completions",
            json={"model": "LongCat-Flash-Chat", "messages": MESSAGES},
            headers={"authorization": f"Bearer {KEY}"},
        )
        ant = client.post(
            gateway.anthropic_base_url + "/v1/messages",
            json={"model": "LongCat-2.0", "max_tokens": 10, "messages": MESSAGES},
            headers={"x-api-key": KEY},
        )
    assert oai.status_code == ant.status_code == 502
    assert oai.json()["error"]["type"] == "api_error"
    assert oai.json()["error"]["code"] == "upstream_unreachable"
    assert "could not be reached" in oai.json()["error"]["message"]
    assert ant.json()["type"] == "error" and ant.json()["error"]["type"] == "api_error"
    assert [(r.api, r.status_code, r.error_type) for r in captured.records] == [
        ("openai", None, "connection"),
        ("anthropic", None, "connection"),
    ]
    with openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0) as sdk:
        with pytest.raises(openai.APIStatusError) as raised:
            sdk.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
        assert raised.value.status_code == 502


def test_upstream_timeout_is_a_504(gateway_for: GatewayFactory, captured: CapturedCalls) -> None:
    gateway = gateway_for(recorder=captured, gateway_timeout_s=0.3)
    with anthropic.Anthropic(
        base_url=gateway.anthropic_base_url, api_key=KEY, max_retries=0
    ) as client:
        with pytest.raises(anthropic.APIStatusError) as raised:
            client.messages.create(
                model="LongCat-2.0",
                max_tokens=10,
                messages=MESSAGES,
                extra_headers={"x-simulate-fault": "hang"},
            )
        assert raised.value.status_code == 504
        assert raised.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
        record = captured.only()
        assert (record.status_code, record.error_type) == (None, "timeout")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"x-gateway-token": "wrong-token-0123456789"}, 401),
        ({"x-gateway-token": TOKEN}, 200),
        ({"proxy-authorization": f"Bearer {TOKEN}"}, 200),
    ],
)
def test_the_access_token_is_required_when_set(
    gateway_for: GatewayFactory, captured: CapturedCalls, headers: dict[str, str], status: int
) -> None:
    gateway = gateway_for(recorder=captured, gateway_token=TOKEN)
    with httpx2.Client() as client:
        response = client.post(
            gateway.anthropic_base_url + "/v1/messages",
            json={"model": "LongCat-2.0", "max_tokens": 10, "messages": MESSAGES},
            headers={"x-api-key": KEY, **headers},
        )
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["type"] == "authentication_error"
        assert "x-gateway-token" in response.json()["error"]["message"]
        assert captured.records == []  # refused before anything went upstream
    else:
        assert captured.only().status_code == 200


class SpyTransport(httpx2.AsyncBaseTransport):
    """The gateway's own upstream transport, keeping each request it forwards."""

    def __init__(self) -> None:
        self.inner = UpstreamTransport()
        self.seen: list[httpx2.Request] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_the_token_is_not_forwarded(gateway_for: GatewayFactory, captured: CapturedCalls) -> None:
    upstream = SpyTransport()
    gateway = gateway_for(recorder=captured, gateway_token=TOKEN, upstream_transport=upstream)
    with openai.OpenAI(
        base_url=gateway.openai_base_url,
        api_key=KEY,
        max_retries=0,
        default_headers={"x-gateway-token": TOKEN},
    ) as client:
        client.chat.completions.create(model="LongCat-Flash-Chat", messages=MESSAGES)
    (request,) = upstream.seen
    assert "x-gateway-token" not in request.headers
    assert request.headers["authorization"] == f"Bearer {KEY}"  # the key, unchanged
