"""Text from traffic or from whoever names a key (model, endpoint, key names, messages) shows on
the dashboard as written, never as Markdown: no link, image or formatting of its own (issue 12)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from seeding import Seeded

from monitor.capture.fingerprint import key_id
from monitor.dashboard.common import as_text
from monitor.records import CallRecord
from monitor.store.calls import insert_calls
from monitor.store.keys import add_key

LINK = "[free credits](https://evil.example/claim)"
IMAGE = "![pixel](https://evil.example/p.png)"
NAME = f"{LINK} **urgent** {IMAGE}"
MODEL = f"LongCat {IMAGE}"
ENDPOINT = f"/openai/v1/{LINK}"
RAW_KEY = "sk-untrusted-text-0a1b2c3d-HTML"
#: A link or image that Markdown would render: ``](`` with no backslash before the ``]``.
RENDERED_LINK = re.compile(r"(?<!\\)\]\(")


def markdown_texts(app: Any) -> list[str]:
    """Every string the page hands Streamlit to render as Markdown."""
    texts = []
    for kind in ("title", "header", "subheader", "markdown", "caption"):
        texts += [str(e.value) for e in getattr(app, kind)]
    for kind in ("error", "warning", "info", "success"):
        texts += [str(e.value) for e in getattr(app, kind)]
    texts += [str(e.label) for e in app.expander]
    texts += [str(e.label) for e in app.metric]
    return texts


def plant(seeded: Seeded, make_call_record: Callable[..., CallRecord]) -> None:
    now = datetime.now(UTC)
    call = make_call_record(
        started_at=now - timedelta(minutes=2),
        endpoint=ENDPOINT,
        key_id=key_id(RAW_KEY),
        key_hint=RAW_KEY[-4:],
        model=MODEL,
    )
    with seeded.engine.begin() as conn:
        add_key(
            conn,
            key_id=key_id(RAW_KEY),
            name=NAME,
            hint=RAW_KEY[-4:],
            quota=1_000_000,
            effective_from=(now - timedelta(days=3)).date(),
            now=now - timedelta(days=3),
        )
        insert_calls(conn, [call])


def test_names_models_and_endpoints_are_shown_as_text(
    seeded: Seeded, open_app: Callable[..., Any], make_call_record: Callable[..., CallRecord]
) -> None:
    plant(seeded, make_call_record)
    from monitor.config import load_settings
    from monitor.ledger.rollup import run_rollup

    run_rollup(seeded.engine, load_settings(), datetime.now(UTC), late_window=timedelta(days=1))
    app = open_app()
    app.multiselect(key="f_keys").set_value([key_id(RAW_KEY)])
    app.multiselect(key="f_models").set_value([MODEL])
    app.multiselect(key="f_endpoints").set_value([ENDPOINT]).run()
    shown = markdown_texts(app)
    assert any(as_text(NAME) in text for text in shown), shown  # the key's panel, escaped
    for page in ("views/history.py", "views/keys.py", "views/errors.py", "views/latency.py"):
        app.switch_page(page)
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        shown += markdown_texts(app)
    assert any(as_text(MODEL) in text for text in shown)  # the filters caption
    assert any(as_text(ENDPOINT) in text for text in shown)
    rendered = [text for text in shown if RENDERED_LINK.search(text) or "**urgent**" in text]
    assert rendered == []
