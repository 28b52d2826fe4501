"""A proxy the environment names for the upstream (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
less ``NO_PROXY``) carries the gateway's calls, as it would carry an ``httpx2`` client's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from capture import CapturedCalls
from forward_proxy import ForwardProxy
from gateway_support import KEY, MESSAGES, GatewayFactory
from tls_support import TlsSimulator

from monitor.simulator import RunningSimulator

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with ForwardProxy() as running:
        yield running


def two_calls(base_url: str) -> list[int]:
    """A body and a stream through the gateway at ``base_url``; the statuses, bodies read whole."""
    payload = {"model": "LongCat-Flash-Chat", "messages": MESSAGES}
    statuses = []
    with httpx2.Client(trust_env=False) as client:  # the test's own calls go direct
        for stream in (False, True):
            response = client.post(
                base_url + "/openai/v1/chat/completions",
                json={**payload, "stream": stream},
                headers={"authorization": f"Bearer {KEY}"},
            )
            assert response.content
            statuses.append(response.status_code)
    return statuses


@pytest.mark.parametrize(
    ("environment", "proxied"),
    [
        ({"HTTPS_PROXY": "{proxy}"}, True),
        ({"https_proxy": "{proxy}"}, True),
        ({"ALL_PROXY": "{proxy}"}, True),
        ({"HTTPS_PROXY": "{proxy_without_scheme}"}, True),
        ({"HTTP_PROXY": "{proxy}"}, False),  # for http:// upstreams only
        ({"HTTPS_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1"}, False),
        ({"ALL_PROXY": "{proxy}", "NO_PROXY": "example.com,127.0.0.1"}, False),
    ],
)
def test_an_https_upstream_goes_through_the_proxy_the_environment_names(
    tls_sim: TlsSimulator,
    certificate: tuple[Path, Path],
    proxy: ForwardProxy,
    gateway_for: GatewayFactory,
    captured: CapturedCalls,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    proxied: bool,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    for name, value in environment.items():
        monkeypatch.setenv(
            name, value.format(proxy=proxy.url, proxy_without_scheme=f"127.0.0.1:{proxy.port}")
        )
    accepted_before = tls_sim.connections
    gateway = gateway_for(recorder=captured, upstream_url=tls_sim.base_url)
    assert two_calls(gateway.base_url) == [200, 200]
    target = f"127.0.0.1:{tls_sim.port}"
    assert proxy.seen == ([f"CONNECT {target}"] if proxied else [])  # one tunnel, kept alive
    assert tls_sim.connections - accepted_before == 1
    assert [(r.status_code, r.stream, r.error_type) for r in captured.records] == [
        (200, False, None),
        (200, True, None),
    ]
    assert all(r.total_tokens for r in captured.records)


@pytest.mark.parametrize(
    ("environment", "proxied"),
    [
        ({"HTTP_PROXY": "{proxy}"}, True),
        ({"ALL_PROXY": "{proxy}"}, True),
        ({"HTTPS_PROXY": "{proxy}"}, False),  # for https:// upstreams only
        ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1"}, False),
        ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "*"}, False),
    ],
)
def test_an_http_upstream_goes_through_the_proxy_the_environment_names(
    sim: RunningSimulator,
    proxy: ForwardProxy,
    gateway_for: GatewayFactory,
    captured: CapturedCalls,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    proxied: bool,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value.format(proxy=proxy.url))
    gateway = gateway_for(recorder=captured)
    assert two_calls(gateway.base_url) == [200, 200]
    forwarded = f"POST {sim.base_url}/openai/v1/chat/completions"
    assert proxy.seen == ([forwarded, forwarded] if proxied else [])
    assert [(r.status_code, r.stream, r.error_type) for r in captured.records] == [
        (200, False, None),
        (200, True, None),
    ]
