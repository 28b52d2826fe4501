"""A call is recorded under the key LongCat bills, ``Authorization: Bearer``, even when it also
carries another in ``x-api-key`` (finding 4 of issue 12); the wrapper never refuses a call for it.
(The gateway's refusal of such calls: tests/gateway/test_billed_credential.py.)"""

from __future__ import annotations

import httpx2
from capture import CapturedCalls

import monitor
from monitor.capture.fingerprint import key_from_headers, key_id
from monitor.simulator import RunningSimulator

KEY = "sk-wrapper-billed-0a1b2c3d4e5f-WXYZ"
DECOY = "sk-decoy-key-with-plenty-of-quota"
BODY = {"model": "LongCat-Flash-Chat", "messages": [{"role": "user", "content": "Hello"}]}


def test_the_bearer_key_is_the_one_counted() -> None:
    assert key_from_headers(f"Bearer {KEY}", DECOY) == KEY
    assert key_from_headers(None, DECOY) == DECOY
    assert key_from_headers("Basic dXNlcjpwYXNz", DECOY) == DECOY


def test_the_wrapper_records_the_billed_key_and_refuses_nothing(
    sim: RunningSimulator, captured: CapturedCalls
) -> None:
    with monitor.instrument(httpx2.Client(base_url=sim.base_url), recorder=captured) as client:
        response = client.post(
            "/openai/v1/chat/completions",
            json=BODY,
            headers={"authorization": f"Bearer {KEY}", "x-api-key": DECOY},
        )
        twice = [("authorization", f"Bearer {KEY}"), ("authorization", f"Bearer {DECOY}")]
        client.get("/openai/v1/models", headers=twice)
    assert response.status_code == 200
    assert [r.key_id for r in captured.records] == [key_id(KEY), key_id(KEY)]
    assert captured.records[0].key_hint == KEY[-4:]
