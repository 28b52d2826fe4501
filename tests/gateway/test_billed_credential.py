"""Usage is counted against the key LongCat bills (``Authorization: Bearer``), and the gateway
refuses a call whose credentials could be read two ways (finding 4 of issue 12: a client at its
quota got a 200 by adding ``x-api-key: decoy``, and its tokens were recorded under the decoy).
(What the wrapper records for such calls: tests/wrapper/test_billed_key.py.)"""

from __future__ import annotations

import http.client

import httpx2
import pytest
from capture import CapturedCalls
from gateway_support import KEY, MESSAGES, GatewayFactory

from monitor.capture.fingerprint import key_id

DECOY = "sk-decoy-key-with-plenty-of-quota"
OPENAI_BODY = {"model": "LongCat-Flash-Chat", "messages": MESSAGES}
ANTHROPIC_BODY = {"model": "LongCat-2.0", "max_tokens": 10, "messages": MESSAGES}


def test_a_decoy_x_api_key_neither_passes_the_guard_nor_takes_the_usage(
    sqlite_url: str, gateway_for: GatewayFactory, captured: CapturedCalls
) -> None:
    gateway = gateway_for(
        recorder=captured, database_url=sqlite_url, gateway_quota_guard=True, default_quota=100
    )
    url = gateway.openai_base_url + "/chat/completions"
    with httpx2.Client() as client:
        billed = {"authorization": f"Bearer {KEY}"}
        while client.post(url, json=OPENAI_BODY, headers=billed).status_code == 200:
            assert len(captured.records) < 10, "the quota of 100 tokens never ran out"
        assert {r.key_id for r in captured.records} == {key_id(KEY)}
        recorded = len(captured.records)
        both = client.post(url, json=OPENAI_BODY, headers={**billed, "x-api-key": DECOY})
        anthropic = client.post(
            gateway.anthropic_base_url + "/v1/messages",
            json=ANTHROPIC_BODY,
            headers={**billed, "x-api-key": DECOY},
        )
        same_key_twice = client.post(url, json=OPENAI_BODY, headers={**billed, "x-api-key": KEY})
    assert both.status_code == 400
    error = both.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "ambiguous_credentials")
    assert KEY not in error["message"] and DECOY not in error["message"]
    assert anthropic.status_code == 400
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    assert same_key_twice.status_code == 429  # one key, said twice: no doubt which is billed
    assert len(captured.records) == recorded  # nothing refused went upstream


@pytest.mark.parametrize("header", ["Authorization", "x-api-key"])
def test_a_repeated_credential_header_is_refused(
    gateway_for: GatewayFactory, captured: CapturedCalls, header: str
) -> None:
    gateway = gateway_for(recorder=captured)
    value = "Bearer {}" if header == "Authorization" else "{}"
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.putrequest("GET", "/openai/v1/models")
        connection.putheader(header, value.format(KEY))
        connection.putheader(header, value.format(DECOY))
        connection.endheaders()
        response = connection.getresponse()
        status, body = response.status, response.read()
    finally:
        connection.close()
    assert status == 400
    assert b"ambiguous_credentials" in body
    assert captured.records == []
