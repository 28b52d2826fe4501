"""Fixtures for the alert tests: a real SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_server import SmtpServer, running_smtp_server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server that accepts everything and keeps it in ``.received``."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def smtp_tls_auth_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """An SMTP server that requires STARTTLS (self-signed certificate) and then a login."""
    with running_smtp_server(cert_dir=tmp_path, require_auth=True) as server:
        yield server
