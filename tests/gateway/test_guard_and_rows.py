"""The quota guard, rows in api_calls (source='gateway'), and the gateway command's safety check."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2
import pytest
import sqlalchemy as sa
from capture import CapturedCalls
from click.testing import CliRunner
from gateway_support import KEY, MESSAGES, GatewayFactory

import monitor
from monitor.capture.fingerprint import key_id
from monitor.cli import cli
from monitor.config import get_settings, load_settings
from monitor.ledger.quota_day import next_reset, quota_day
from monitor.ledger.rollup import run_rollup
from monitor.store.engine import make_engine
from monitor.store.keys import add_key
from monitor.store.models import ApiCall

OPENAI_BODY = {"model": "LongCat-Flash-Chat", "messages": MESSAGES}


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    get_settings.cache_clear()


def post(client: httpx2.Client, base_url: str) -> httpx2.Response:
    return client.post(
        base_url + "/openai/v1/chat/completions",
        json=OPENAI_BODY,
        headers={"authorization": f"Bearer {KEY}"},
    )


def test_rows_land_in_api_calls_as_gateway_calls(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, gateway_for: GatewayFactory
) -> None:
    use_database(monkeypatch, sqlite_url)
    gateway = gateway_for()
    with httpx2.Client() as client:
        answer = post(client, gateway.base_url).json()
    assert monitor.flush(timeout=10)
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            (row,) = conn.execute(sa.select(ApiCall.__table__)).mappings()
    finally:
        engine.dispose()
    assert row["source"] == "gateway" and row["key_id"] == key_id(KEY)
    assert row["total_tokens"] == answer["usage"]["total_tokens"]
    assert (row["status_code"], row["error_type"], row["usage_source"]) == (200, None, "reported")
    assert KEY not in str(dict(row))


def test_guard_refuses_once_the_quota_is_used_up_by_the_gateways_own_calls(
    sqlite_url: str, gateway_for: GatewayFactory, captured: CapturedCalls, midday: datetime
) -> None:
    gateway = gateway_for(
        recorder=captured,
        database_url=sqlite_url,
        gateway_quota_guard=True,
        default_quota=100,
    )
    with httpx2.Client() as client:
        first, second, third = (post(client, gateway.base_url) for _ in range(3))
        refused_anthropic = client.post(
            gateway.anthropic_base_url + "/v1/messages",
            json={"model": "LongCat-2.0", "max_tokens": 10, "messages": MESSAGES},
            headers={"x-api-key": KEY},
        )
        other_key = client.post(
            gateway.openai_base_url + "/chat/completions",
            json=OPENAI_BODY,
            headers={"authorization": "Bearer sk-another-key-with-quota-left"},
        )
    used = sum(r.total_tokens or 0 for r in captured.records[:2])
    assert (first.status_code, second.status_code) == (200, 200) and used >= 100
    assert third.status_code == 429 and refused_anthropic.status_code == 429
    assert other_key.status_code == 200
    error = third.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "quota_exceeded")
    reset = next_reset(datetime.now(UTC), load_settings().tz)
    assert abs(error["retry_after"] - (reset - datetime.now(UTC)).total_seconds()) < 5
    assert third.headers["retry-after"] == str(error["retry_after"])
    assert "00:00 Beijing time (UTC+08:00)" in error["message"]
    assert f"{used:,} of 100 tokens" in error["message"]
    body = refused_anthropic.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert len(captured.records) == 3  # refused calls never went upstream


def test_guard_reads_the_rollup_and_the_registered_quota(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, gateway_for: GatewayFactory, midday: datetime
) -> None:
    use_database(monkeypatch, sqlite_url)
    settings = get_settings()
    engine = make_engine(sqlite_url)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            add_key(
                conn,
                key_id=key_id(KEY),
                name="ci",
                hint="WXYZ",
                quota=50,
                effective_from=quota_day(now, settings.tz),
                now=now,
            )
        unguarded = gateway_for()
        with httpx2.Client() as client:
            assert post(client, unguarded.base_url).status_code == 200
        assert monitor.flush(timeout=10)
        run_rollup(engine, settings)
    finally:
        engine.dispose()
    guarded = gateway_for(gateway_quota_guard=True)
    with httpx2.Client() as client:
        refused = post(client, guarded.base_url)
    assert refused.status_code == 429
    assert "of 50 tokens" in refused.json()["error"]["message"]


def test_guard_is_off_by_default(gateway_for: GatewayFactory, captured: CapturedCalls) -> None:
    gateway = gateway_for(recorder=captured, default_quota=1)
    with httpx2.Client() as client:
        assert [post(client, gateway.base_url).status_code for _ in range(2)] == [200, 200]


def test_the_command_refuses_a_public_address_without_a_token() -> None:
    result = CliRunner().invoke(cli, ["gateway", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "MONITOR_GATEWAY_TOKEN" in result.output


def test_a_short_token_is_rejected() -> None:
    with pytest.raises(monitor.ConfigError, match="MONITOR_GATEWAY_TOKEN: expected at least 16"):
        load_settings(gateway_token="short")
