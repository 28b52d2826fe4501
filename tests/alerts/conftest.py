"""Fixtures for the alert tests: an SMTP server that wants STARTTLS and a login."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_server import SmtpServer, running_smtp_server


@pytest.fixture
def smtp_tls_auth_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """An SMTP server that requires STARTTLS (self-signed certificate) and then a login."""
    with running_smtp_server(cert_dir=tmp_path, require_auth=True) as server:
        yield server
