"""``longcat-monitor dashboard``: where the server listens, from the options or Streamlit's own
environment variables."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from monitor.cli import cli


class Exec(Exception):
    """Raised instead of replacing the test process with the Streamlit server."""


def served_argv(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str]) -> list[str]:
    seen: list[list[str]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        seen.append(list(argv))
        raise Exec

    monkeypatch.setattr(os, "execv", fake_execv)
    result = CliRunner().invoke(cli, ["dashboard", *args], env=env)
    assert isinstance(result.exception, Exec), result.output
    (argv,) = seen
    return argv


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_streamlit_variables_set_the_address_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"STREAMLIT_SERVER_PORT": "8611", "STREAMLIT_SERVER_ADDRESS": "127.0.0.2"}
    argv = served_argv(monkeypatch, [], env)
    assert option(argv, "--server.port") == "8611"
    assert option(argv, "--server.address") == "127.0.0.2"


def test_options_win_over_the_streamlit_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"STREAMLIT_SERVER_PORT": "8611", "STREAMLIT_SERVER_ADDRESS": "127.0.0.2"}
    argv = served_argv(monkeypatch, ["--port", "8700", "--host", "127.0.0.3"], env)
    assert option(argv, "--server.port") == "8700"
    assert option(argv, "--server.address") == "127.0.0.3"


def test_defaults_without_options_or_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMLIT_SERVER_PORT", raising=False)
    monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS", raising=False)
    argv = served_argv(monkeypatch, [], {})
    assert option(argv, "--server.port") == "8501"
    assert option(argv, "--server.address") == "127.0.0.1"


def test_a_bad_port_variable_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["dashboard"], env={"STREAMLIT_SERVER_PORT": "http"})
    assert result.exit_code == 2
    assert "STREAMLIT_SERVER_PORT" in result.output or "--port" in result.output
