"""Every page on a seeded database (SQLite and Postgres): the figures shown are the database's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from http_receiver import running_receiver
from seeding import Seeded, metric
from smtp_server import running_smtp_server

from monitor.cli.demo_traffic import DEMO_KEYS
from monitor.dashboard.common import as_text

_search, support, reports, _revoked = DEMO_KEYS


def figure(text: str) -> int:
    return int(text.replace(",", ""))


def test_today_shows_used_tokens_and_calls_per_key(
    seeded: Seeded, open_app: Callable[..., Any]
) -> None:
    app = open_app()
    start, end = seeded.today_bounds()
    assert figure(metric(app, "Tokens used today (all keys)")) == seeded.billed(start, end)
    assert figure(metric(app, "Calls today")) == seeded.count(start, end)
    used = [figure(m.value) for m in app.metric if m.label == "Used today"]
    calls = [figure(m.value) for m in app.metric if m.label == "Calls today"][1:]
    headers = [h.value for h in app.subheader]
    expected_used, expected_calls = [], []
    for header in headers:
        key = next(k for k in DEMO_KEYS if k.hint in header)
        expected_used.append(seeded.billed(start, end, key.key_id))
        expected_calls.append(seeded.count(start, end, " AND key_id = :k", k=key.key_id))
    assert used == expected_used
    assert calls == expected_calls
    # The reports key (40,000 tokens a day) has run past its quota: the bar says how far.
    share = 100 * seeded.billed(start, end, reports.key_id) / 40_000
    bars = [p.proto.text for p in app.get("progress")]
    assert share > 100
    assert f"{share:.1f}% of the daily quota used — quota exhausted" in bars
    assert "Beijing time (UTC+8)" in " ".join(c.value for c in app.caption)


def test_usage_over_time_totals(seeded: Seeded, open_app: Callable[..., Any]) -> None:
    app = open_app("views/history.py")
    start, end = seeded.range_bounds(7)
    assert figure(metric(app, "Tokens in range")) == seeded.billed(start, end)
    assert figure(metric(app, "Calls in range")) == seeded.count(start, end)
    table = app.dataframe[-1].value
    assert int(table["tokens"].sum()) == seeded.billed(start, end)


def test_errors_page_counts_and_recent_failures(
    seeded: Seeded, open_app: Callable[..., Any]
) -> None:
    app = open_app("views/errors.py")
    start, end = seeded.range_bounds(7)
    failed = seeded.count(start, end, " AND error_type IS NOT NULL")
    assert figure(metric(app, "Failed calls")) == failed
    failures = app.dataframe[-1].value
    assert failures.iloc[0]["request id"] == "req_newest_failure"
    assert failures.iloc[0]["key"] == "support-bot (…SUPT)"
    assert int(failures.iloc[0]["status"]) == 429
    assert len(failures) == min(failed, 100)


def test_latency_page_covers_every_call(seeded: Seeded, open_app: Callable[..., Any]) -> None:
    app = open_app("views/latency.py")
    start, end = seeded.range_bounds(7)
    summary = app.dataframe[-1].value
    assert int(summary["calls"].sum()) == seeded.count(start, end)


def test_alerts_page_shows_the_ledger(seeded: Seeded, open_app: Callable[..., Any]) -> None:
    app = open_app("views/alerts.py")
    for status in ("sent", "retrying"):
        expected = seeded.scalar(
            "SELECT COUNT(*) FROM alert_deliveries WHERE status = :s", s=status
        )
        assert figure(metric(app, status)) == expected
    skipped = seeded.scalar("SELECT COUNT(*) FROM alert_ledger WHERE status = 'skipped'")
    assert figure(metric(app, "skipped")) == skipped
    assert figure(metric(app, "retrying")) >= 1
    ledger, per_channel = app.dataframe[-2].value, app.dataframe[-1].value
    assert len(ledger) == seeded.scalar("SELECT COUNT(*) FROM alert_ledger")
    assert len(per_channel) == seeded.scalar("SELECT COUNT(*) FROM alert_deliveries")
    assert set(per_channel["channel"]) == {"email"}
    assert "email: retrying" in " ".join(ledger["channels"])
    assert "50%, 80%, 90%, 100%" in " ".join(m.value for m in app.markdown)


def test_keys_page_lists_registered_and_unnamed_keys(
    seeded: Seeded, open_app: Callable[..., Any]
) -> None:
    app = open_app("views/keys.py")
    table = app.dataframe[0].value
    assert list(table["name"]) == ["nightly-reports", "search", "support-bot", "(unnamed)"]
    row = table[table["name"] == "nightly-reports"].iloc[0]
    assert row["hint"] == f"…{reports.hint}"
    assert figure(row.iloc[2]) == reports.quota


def test_filters_carry_across_pages(seeded: Seeded, open_app: Callable[..., Any]) -> None:
    app = open_app()
    app.multiselect(key="f_keys").set_value([support.key_id]).run()
    assert [h.value for h in app.subheader] == [as_text("support-bot …SUPT")]
    app.switch_page("views/history.py")
    app.run()
    assert app.multiselect(key="f_keys").value == [support.key_id]
    start, end = seeded.range_bounds(7)
    assert figure(metric(app, "Tokens in range")) == seeded.billed(start, end, support.key_id)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("accepts", [True, False])
def test_send_test_reports_the_smtp_outcome(
    seeded: Seeded,
    open_app: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    accepts: bool,
) -> None:
    with running_smtp_server() as smtp:
        monkeypatch.setenv("MONITOR_SMTP_HOST", smtp.host)
        monkeypatch.setenv("MONITOR_SMTP_PORT", str(smtp.port if accepts else 1))
        app = open_app("views/alerts.py")
        assert app.selectbox[0].options == ["email"]
        app.selectbox[0].set_value("email")
        app.button[0].click().run()
        if accepts:
            assert [s.value for s in app.success] == [
                f"Accepted by {as_text('email (e-mail (SMTP))')}."
            ]
            assert [m.subject for m in smtp.received] == ["LongCat monitor: test message"]
        else:
            assert app.error and app.error[0].value.startswith("Not sent:")
            assert not smtp.received


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_channels_are_masked_and_send_test_goes_to_the_chosen_one(
    seeded: Seeded, open_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_receiver() as chat:
        secret = "Tq83hd02kdLwSECRETt0ken"
        monkeypatch.setenv("MONITOR_ALERT_URLS", chat.url("json", f"/hooks/{secret}"))
        monkeypatch.setenv("MONITOR_ROUTES", "critical=json")
        app = open_app("views/alerts.py")
        routes, channels = app.dataframe[0].value, app.dataframe[1].value
        assert list(routes["channels"]) == ["json"]
        assert list(channels["channel"]) == ["email", "json"]
        shown = channels.to_string() + app.dataframe[-1].value.to_string()
        assert secret not in shown and "/hooks/T...n" in shown
        app.selectbox[0].set_value("json")
        app.button[0].click().run()
        [posted] = chat.received
    assert posted.json()["title"] == "LongCat monitor: test message"
    assert secret not in " ".join(s.value for s in app.success)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_silence_button_adds_a_silence_the_tick_then_honours(
    seeded: Seeded, open_app: Callable[..., Any]
) -> None:
    app = open_app("views/alerts.py")
    rule, key, span = app.selectbox[1], app.selectbox[2], app.selectbox[3]
    rule.set_value("error_rate")
    key.set_value("every key")
    span.set_value("4 hours")
    app.button[1].click().run()
    assert any(s.value.startswith("Silence #1: error_rate for every key") for s in app.success)
    assert seeded.scalar("SELECT COUNT(*) FROM alert_silences WHERE rule = 'error_rate'") == 1


def test_costs_page_shows_the_charged_cost_and_the_balance(
    seeded: Seeded, open_app: Callable[..., Any]
) -> None:
    from monitor.queries import format_money

    app = open_app("views/costs.py")
    start, end = seeded.range_bounds(7)
    cost = seeded.scalar(
        "SELECT sum(cost_nanos) FROM hourly_usage WHERE hour >= :start AND hour < :end",
        start=start,
        end=end,
    )
    assert cost > 0  # the demo pool's quota is crossed
    assert metric(app, "Cost in range") == format_money(cost, "USD", places=2)
    assert metric(app, "Estimated balance").startswith("$")
    # the nightly-reports key runs past its quota on a model with no price
    assert any("no price" in w.value for w in app.warning)
    # the charged cost shared out by the client that made the calls, adding up to the total
    [shares] = [d.value for d in app.dataframe if "client" in d.value.columns]
    assert len(shares) > 0 and int(shares["billed tokens"].sum()) > 0


@pytest.mark.parametrize(
    "page",
    [
        "views/history.py",
        "views/errors.py",
        "views/latency.py",
        "views/alerts.py",
        "views/keys.py",
        "views/costs.py",
    ],
)
def test_every_table_has_a_csv_download_of_what_it_shows(
    seeded: Seeded, open_app: Callable[..., Any], page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import pandas as pd
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, tuple[bytes, str]] = {}  # what the buttons hand over, by media file id
    load = MemoryMediaFileStorage.load_and_get_id

    def keep(self: Any, path_or_data: Any, mimetype: str, *args: Any, **kw: Any) -> str:
        file_id = load(self, path_or_data, mimetype, *args, **kw)
        files[file_id] = (path_or_data, mimetype)
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    app = open_app(page)
    buttons = app.get("download_button")
    assert len(buttons) == len(app.dataframe) >= 1
    for table, button in zip(app.dataframe, buttons, strict=True):
        assert button.proto.label == "Download CSV"
        content, mimetype = files[button.proto.url.rsplit("/", 1)[-1].split(".")[0]]
        assert mimetype == "text/csv"
        downloaded = pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)
        shown = table.value.reset_index(drop=True)
        assert list(downloaded.columns) == list(shown.columns)
        assert downloaded.to_dict("records") == pd.read_csv(
            io.StringIO(shown.to_csv(index=False)), dtype=str, keep_default_na=False
        ).to_dict("records")
        assert len(downloaded) == len(shown)
