"""Secrets: a known API key goes through every path, then is searched for everywhere.

Calls through both SDKs (successes, errors, streams, a cut stream), every logger at DEBUG into
a file and caplog, the CLI, an alert e-mail; then the database file (raw bytes, WAL included),
the logs, the e-mails, CLI output, exception messages and reprs, and the records' reprs.
"""

from __future__ import annotations

import base64
import logging
import urllib.parse
from pathlib import Path

import anthropic
import openai
import pytest
from click.testing import CliRunner
from smtp_server import SmtpServer

import monitor
from monitor.cli import cli
from monitor.simulator import RunningSimulator

KEY = "ak_SecretKeyUnderTest_9f8e7d6c5b4a3210zz"
FORMS = {
    "raw": KEY,
    "base64": base64.b64encode(KEY.encode()).decode(),
    "base64 (no padding)": base64.b64encode(KEY.encode()).decode().rstrip("="),
    "url-encoded": urllib.parse.quote(KEY, safe=""),
    "middle part": KEY[3:-4],  # the hint (last 4) is allowed; the rest of the key is not
}


def assert_no_key(where: str, text: str | bytes) -> None:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    for name, form in FORMS.items():
        assert form.encode() not in data, f"the key ({name}) appears in {where}"


def test_the_key_appears_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    smtp_server: SmtpServer,
) -> None:
    db = tmp_path / "secrets.db"
    monkeypatch.setenv("MONITOR_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("MONITOR_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("MONITOR_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("MONITOR_FLUSH_INTERVAL_S", "0.1")
    log_file = tmp_path / "all.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    try:
        runner = CliRunner()
        added = runner.invoke(
            cli,
            ["keys", "add", "team", "--quota", "1", "--email", "oncall@example.com"],
            env={"LONGCAT_API_KEY": KEY},
        )
        assert added.exit_code == 0, added.output
        texts.append(added.output)
        refused = runner.invoke(cli, ["keys", "add", KEY])
        assert refused.exit_code == 2
        texts.append(refused.output)

        with RunningSimulator() as sim:
            oa = monitor.instrument(openai.OpenAI(base_url=sim.openai_base_url, api_key=KEY))
            an = monitor.instrument(
                anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key=KEY)
            )
            messages = [{"role": "user", "content": "hello"}]
            oa.chat.completions.create(model="LongCat-Flash-Chat", messages=messages)
            for chunk in oa.chat.completions.create(
                model="LongCat-Flash-Chat", messages=messages, stream=True
            ):
                texts.append(repr(chunk))
            an.messages.create(model="LongCat-Flash-Chat", max_tokens=50, messages=messages)
            with an.messages.stream(
                model="LongCat-Flash-Chat", max_tokens=50, messages=messages
            ) as stream:
                texts.extend(stream.text_stream)
            for fault in ("auth", "rate_limit", "server_error", "cut_stream", "stream_error"):
                for call in (
                    lambda h: (
                        oa.with_options(max_retries=0)
                        .chat.completions.create(
                            model="LongCat-Flash-Chat",
                            messages=messages,
                            stream=True,
                            extra_headers=h,
                        )
                        .response.read()
                    ),
                    lambda h: an.with_options(max_retries=0).messages.create(
                        model="LongCat-Flash-Chat",
                        max_tokens=50,
                        messages=messages,
                        extra_headers=h,
                    ),
                ):
                    try:
                        call({"x-simulate-fault": fault})
                    except Exception as exc:
                        texts += [str(exc), repr(exc), repr(exc.__dict__)]
        assert monitor.flush(timeout=30)

        for args in (["keys", "list"], ["tick"], ["db", "current"]):
            result = runner.invoke(cli, args)
            assert result.exit_code == 0, result.output
            texts.append(result.output)
    finally:
        root.removeHandler(handler)
        handler.close()

    assert smtp_server.received, "no alert e-mail was sent"
    for message in smtp_server.received:
        assert_no_key("an alert e-mail", message.raw)
    for path in sorted(tmp_path.glob("secrets.db*")):
        if path.is_file():
            assert_no_key(f"the database file {path.name}", path.read_bytes())
    assert_no_key("the log file", log_file.read_bytes())
    assert_no_key("the captured logs", caplog.text)
    for record in caplog.records:
        assert_no_key("a log record's arguments", repr(record.args))
    for text in texts:
        assert_no_key("CLI output, an exception or a repr", text)
