"""Who can reach the dashboard (finding 9 of issue 12): it is not served to other machines
without a password, wrong passwords slow the next tries down (per session and for all sessions),
and the test message goes only to the channels the configuration names, never to an address
typed into the page."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from seeding import Seeded
from smtp_server import running_smtp_server

from monitor.cli import cli
from monitor.cli import demo as demo_module
from monitor.config import get_settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
def fresh_backoff() -> Iterator[None]:
    """No wrong password from another test counts here, nor ours in another test."""
    import streamlit as st

    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@pytest.mark.parametrize("command", ["dashboard", "demo"])
def test_the_command_refuses_a_public_address_without_a_password(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(os, "execv", lambda *args: started.append(args))
    monkeypatch.setattr(demo_module, "run_demo", lambda **kwargs: started.append(kwargs))
    result = CliRunner().invoke(cli, [command, "--host", "0.0.0.0"])
    assert result.exit_code == 2 and not started
    assert "MONITOR_DASHBOARD_PASSWORD" in result.output
    monkeypatch.setenv("MONITOR_DASHBOARD_PASSWORD", PASSWORD)
    get_settings.cache_clear()
    assert CliRunner().invoke(cli, [command, "--host", "0.0.0.0"]).exit_code == 0
    assert len(started) == 1


def test_the_app_refuses_a_public_address_without_a_password(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seeding import APP
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        app = AppTest.from_file(APP, default_timeout=60).run()
    finally:
        config.set_option("server.address", before)
    assert [e.value for e in app.error] and "MONITOR_DASHBOARD_PASSWORD" in app.error[0].value
    assert not app.metric  # nothing of the data was shown


def sign_in(app: Any, password: str) -> Any:
    app.text_input[0].input(password)
    app.button[0].click().run()
    return app


def signed_in(app: Any) -> bool:
    return bool(app.metric)  # the Today page's figures; the sign-in page has none


def new_session() -> Any:
    from seeding import APP
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=60).run()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_wrong_passwords_slow_down_the_session(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch, fresh_backoff: None
) -> None:
    monkeypatch.setenv("MONITOR_DASHBOARD_PASSWORD", PASSWORD)
    app = new_session()
    for _ in range(3):
        sign_in(app, "guess")
        assert [e.value for e in app.error] == ["That password is not right."]
    sign_in(app, PASSWORD)  # right, but too soon after three wrong ones: not even checked
    assert not signed_in(app)
    assert app.error[0].value.startswith("Too many wrong passwords: try again in ")
    assert signed_in(sign_in(new_session(), PASSWORD))  # another session is not held back


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_wrong_passwords_from_many_sessions_slow_down_every_session(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch, fresh_backoff: None
) -> None:
    monkeypatch.setenv("MONITOR_DASHBOARD_PASSWORD", PASSWORD)
    for _ in range(4):  # a guesser opening a new session before each session's limit
        app = new_session()
        for _ in range(3):
            sign_in(app, "guess")
    app = sign_in(new_session(), PASSWORD)
    assert not signed_in(app)
    assert app.error[0].value.startswith("Too many wrong passwords")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_test_message_goes_only_to_configured_channels(
    seeded: Seeded, open_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_smtp_server() as smtp:
        monkeypatch.setenv("MONITOR_SMTP_HOST", smtp.host)
        monkeypatch.setenv("MONITOR_SMTP_PORT", str(smtp.port))
        app = open_app("views/alerts.py")
        assert not app.text_input  # no address of the viewer's choosing
        assert app.selectbox[0].options == ["email"]  # the configured channels, by name
        app.selectbox[0].set_value("email")
        app.button[0].click().run()
        assert [m.recipients for m in smtp.received] == [["team@example.com"]]
