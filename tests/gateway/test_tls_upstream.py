"""An HTTPS upstream (LongCat's own is one): the simulator behind TLS on 127.0.0.1.

The certificate is trusted the standard way, through ``SSL_CERT_FILE``; without it the handshake
fails and the client gets a 502 in its API's shape, recorded as a connection error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from gateway_support import ANTHROPIC, KEY, MESSAGES, OPENAI, GatewayFactory, call
from tls_support import TlsSimulator
from waiting import eventually

import monitor
from monitor.config import get_settings, load_settings
from monitor.gateway import RunningGateway
from monitor.gateway.upstream import UpstreamTransport
from monitor.simulator import RunningSimulator
from monitor.store.engine import make_engine
from monitor.store.models import ApiCall

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
#: Columns that differ from one call to the next whatever the upstream.
VOLATILE = {"id", "event_id", "started_at", "latency_ms", "ttft_ms", "request_id", "host"}
CALLS = [
    (OPENAI, {}),
    (OPENAI, {"stream": True, "stream_options": {"include_usage": True}}),
    (ANTHROPIC, {}),
    (ANTHROPIC, {"stream": True}),
]


@pytest.fixture(autouse=True)
def _no_proxies_nor_extra_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def api_calls(url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(ApiCall.__table__).order_by(ApiCall.id)).mappings()
            return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]
    finally:
        engine.dispose()


def test_https_upstream_answers_and_records_as_plain_http_does_on_one_connection(
    sim: RunningSimulator,
    tls_sim: TlsSimulator,
    certificate: tuple[Path, Path],
    gateway_for: GatewayFactory,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    plain = gateway_for()
    over_tls = gateway_for(upstream_url=tls_sim.base_url)

    with httpx2.Client(trust_env=False) as client:
        expected = [call(client, plain.base_url + path, body, {}) for path, body in CALLS]
        assert monitor.flush(timeout=10)
        plain_rows = api_calls(sqlite_url)
        accepted_before = tls_sim.connections
        got = [call(client, over_tls.base_url + path, body, {}) for path, body in CALLS]
    assert monitor.flush(timeout=10)

    assert [status for status, *_ in expected] == [200] * len(CALLS)
    assert got == expected  # same status, headers we compare, bytes (ids masked), no error
    assert tls_sim.connections - accepted_before == 1  # one TLS connection, kept alive
    tls_rows = api_calls(sqlite_url)[len(plain_rows) :]
    assert tls_rows == plain_rows  # same api_calls rows, column for column
    assert [(row["source"], row["stream"]) for row in tls_rows] == [
        ("gateway", False),
        ("gateway", True),
        ("gateway", False),
        ("gateway", True),
    ]
    assert all(row["total_tokens"] and row["usage_source"] == "reported" for row in tls_rows)


def test_an_untrusted_certificate_is_a_502_recorded_as_a_connection_error(
    tls_sim: TlsSimulator, gateway_for: GatewayFactory, captured: Any
) -> None:
    gateway = gateway_for(recorder=captured, upstream_url=tls_sim.base_url)
    with httpx2.Client(trust_env=False) as client:
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
    error = oai.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "upstream_unreachable")
    assert error["message"].startswith(
        f"The LongCat API at {tls_sim.base_url} could not be reached"
    )
    assert "certificate verify failed" in error["message"]
    assert ant.json()["type"] == "error" and ant.json()["error"]["type"] == "api_error"
    assert "certificate verify failed" in ant.json()["error"]["message"]
    records = captured.records
    assert [(r.api, r.status_code, r.error_type, r.error_code) for r in records] == [
        ("openai", None, "connection", "ConnectError"),
        ("anthropic", None, "connection", "ConnectError"),
    ]
    assert all("certificate verify failed" in (r.error_message or "") for r in records)


def test_a_stopped_gateway_has_closed_its_tls_connections(
    tls_sim: TlsSimulator,
    certificate: tuple[Path, Path],
    captured: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    upstream = UpstreamTransport()  # held here, so only a real close ends its connections
    settings = load_settings(upstream_url=tls_sim.base_url)
    open_before = tls_sim.open_connections
    with RunningGateway(settings, recorder=captured, upstream_transport=upstream) as gateway:
        with httpx2.Client(trust_env=False) as client:
            assert call(client, gateway.base_url + OPENAI, {}, {})[0] == 200
        assert tls_sim.open_connections == open_before + 1
    # The TLS connection ended, not left behind.
    eventually(lambda: tls_sim.open_connections == open_before, what="the connection to close")
