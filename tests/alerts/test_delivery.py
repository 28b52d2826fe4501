"""SMTP delivery against a real aiosmtpd server on loopback."""

from __future__ import annotations

import pytest
from smtp_server import SMTP_PASSWORD, SMTP_USER, SmtpServer, running_smtp_server

from monitor.alerts.delivery import DeliveryError, Email, SmtpSender
from monitor.config import Settings, load_settings

MAIL = Email(("ops@example.com", "lead@example.com"), "Subject ✓", "plain body", "<p>html</p>")


def settings_for(server: SmtpServer, **extra: object) -> Settings:
    return load_settings(
        smtp_host=server.host, smtp_port=server.port, alert_from="monitor@example.com", **extra
    )


def test_plain_smtp(smtp_server: SmtpServer) -> None:
    SmtpSender(lambda: settings_for(smtp_server))(MAIL)
    [got] = smtp_server.received
    assert got.recipients == list(MAIL.recipients)
    assert got.sender == "monitor@example.com"
    assert got.subject == "Subject ✓"
    assert got.part("plain").strip() == "plain body"
    assert got.part("html").strip() == "<p>html</p>"
    assert not got.tls and got.authenticated_as is None


def test_starttls_and_login(smtp_tls_auth_server: SmtpServer) -> None:
    server = smtp_tls_auth_server
    settings = settings_for(
        server, smtp_starttls=True, smtp_user=SMTP_USER, smtp_password=SMTP_PASSWORD
    )
    SmtpSender(lambda: settings, ssl_context=server.client_context())(MAIL)
    [got] = server.received
    assert got.tls and got.authenticated_as == SMTP_USER
    assert SMTP_PASSWORD.encode() not in got.raw


def test_wrong_password_is_our_error_without_the_password(smtp_tls_auth_server: SmtpServer) -> None:
    server = smtp_tls_auth_server
    settings = settings_for(
        server, smtp_starttls=True, smtp_user=SMTP_USER, smtp_password="wrong-password-xyz"
    )
    with pytest.raises(DeliveryError) as info:
        SmtpSender(lambda: settings, ssl_context=server.client_context())(MAIL)
    assert "535" in str(info.value) and "wrong-password-xyz" not in str(info.value)
    assert not info.value.temporary
    assert server.received == []


def test_server_refusing_with_451_is_temporary() -> None:
    with running_smtp_server(fail_first=1) as server:
        sender = SmtpSender(lambda: settings_for(server))
        with pytest.raises(DeliveryError, match="451") as info:
            sender(MAIL)
        assert info.value.temporary
        sender(MAIL)
        assert len(server.received) == 1


def test_nothing_listening_is_our_error() -> None:
    with running_smtp_server() as server:
        settings = settings_for(server)
    with pytest.raises(DeliveryError, match="ConnectionRefused"):
        SmtpSender(lambda: settings, timeout=2)(MAIL)


def test_no_smtp_host() -> None:
    with pytest.raises(DeliveryError, match="MONITOR_SMTP_HOST"):
        SmtpSender(lambda: load_settings(smtp_host=None))(MAIL)


def test_settings_are_read_at_send_time(smtp_server: SmtpServer) -> None:
    current: dict[str, Settings] = {"s": load_settings(smtp_host=None)}
    sender = SmtpSender(lambda: current["s"])
    with pytest.raises(DeliveryError):
        sender(MAIL)
    current["s"] = settings_for(smtp_server)
    sender(MAIL)
    assert len(smtp_server.received) == 1
