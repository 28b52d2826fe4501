"""Property: arbitrary strings in the model, the labels, the headers and the error bodies of calls
never cost another call its record, never stop a tick, and never leave a key in the database.

Each example makes three calls through the wrapper to a MockTransport upstream (one ordinary,
one success and one 401 carrying the drawn strings), writes them to a real SQLite or Postgres
database, runs a tick, and reads every stored value back. Examples are few (the CI budget is
tight); the fixed cases of each finding are in ``test_hostile_storage.py``.
"""

from __future__ import annotations

import base64
import json
import string
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

import monitor
from monitor.config import load_settings
from monitor.ledger.jobs import run_tick
from monitor.recording.recorder import Recorder
from monitor.recording.spool import Spool
from monitor.recording.sql_sink import SqlSink
from monitor.store.engine import make_engine
from monitor.store.models import ApiCall

KEY = "ak_PropertyKeyUnderTest_5a4b3c2d1e0f9a8b7c"
CHAT = "/openai/v1/chat/completions"
KEY_FORMS = (
    KEY,
    KEY[3:-4],
    urllib.parse.quote(KEY, safe=""),
    base64.b64encode(KEY.encode()).decode().rstrip("="),
)

#: Any code point: NUL, controls, line separators, lone surrogates, astral characters.
anything = st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=300)
#: Secrets of other shapes, each long and random enough to be told from anything else.
secret_tail = st.text(string.ascii_letters + string.digits, min_size=20, max_size=40)
secrets = st.one_of(
    st.just(KEY),
    secret_tail.map(lambda t: "sk-proj-" + t),
    secret_tail.map(lambda t: "ak_" + t),
)


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, str]:
    """(text, the secret hidden in it): arbitrary text around a key of some shape (set apart by
    spaces: a key glued to the word before it is not told from a word)."""
    secret = draw(secrets)
    where = draw(st.sampled_from(["plain", "bearer", "x-api-key", "none"]))
    shown = {"plain": secret, "bearer": f"Bearer {secret}", "x-api-key": f"x-api-key: {secret}"}
    return f"{draw(anything)} {shown.get(where, '')} {draw(anything)}", secret


def as_json(value: Any) -> bytes:
    """JSON as a client sends it: a lone surrogate escaped (``\\ud800``), not an error."""
    return json.dumps(value).encode()


def latin1(text: str) -> str:
    """What an HTTP header can carry of ``text``."""
    return "".join(c for c in text if 0x20 <= ord(c) <= 0xFF and c != "\x7f")[:200]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    model=hostile(),
    label=hostile(),
    label_name=anything,
    request_id=hostile(),
    message=hostile(),
    code=anything,
)
def test_arbitrary_strings_cost_nothing_but_themselves(
    engine: Engine,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    model: tuple[str, str],
    label: tuple[str, str],
    label_name: str,
    request_id: tuple[str, str],
    message: tuple[str, str],
    code: str,
) -> None:
    spool = Spool(tmp_path_factory.mktemp("spool"), 10_000_000)
    recorder = Recorder(SqlSink(database_url), spool=spool, flush_interval_s=30)
    secrets_used = {model[1], label[1], request_id[1], message[1]}

    def upstream(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("fail"):
            error = {"error": {"message": message[0], "code": code, "type": "auth"}}
            return httpx.Response(401, content=as_json(error))
        answer: dict[str, Any] = {
            "model": body["model"],
            "choices": [{"message": {"content": "ok"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        headers = [
            (b"x-request-id", latin1(request_id[0]).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]
        return httpx.Response(200, content=as_json(answer), headers=headers)

    def post(body: dict[str, Any]) -> None:
        headers = {"content-type": "application/json"}
        client.post(CHAT, content=as_json(body), headers=headers)

    client = monitor.instrument(
        httpx.Client(
            base_url="http://upstream.test",
            transport=httpx.MockTransport(upstream),
            headers={"authorization": f"Bearer {KEY}"},
        ),
        recorder=recorder,
    )
    with engine.connect() as conn:
        before = len(conn.execute(select(ApiCall.event_id)).all())
    with client:
        post({"model": "LongCat-2.0"})
        with monitor.tags(**{label_name or "l": label[0]}):
            post({"model": model[0], "stream": False})
        post({"model": "LongCat-2.0", "fail": True})
    assert recorder.flush(timeout=60)
    stats = recorder.stats()
    recorder.shutdown(timeout=10)
    assert stats.submitted == 3 and stats.lost == 0 and stats.quarantined == 0
    assert not spool.pending()

    with engine.connect() as conn:
        rows = conn.execute(select(ApiCall)).all()
    ids = [row.event_id for row in rows]
    assert len(ids) == len(set(ids)) == before + 3  # every record, once
    run_tick(engine, load_settings(database_url=database_url), datetime.now(UTC), lambda e: None)

    stored = json.dumps([[str(v) for v in row] for row in rows], ensure_ascii=False)
    for secret in secrets_used | set(KEY_FORMS):
        assert secret not in stored
    assert "\x00" not in stored
    for row in rows:
        assert len(row.model or "") <= 200 and len(row.error_message or "") <= 500
