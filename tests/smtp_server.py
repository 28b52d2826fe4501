"""A real SMTP server on loopback (aiosmtpd) that captures what it receives, for tests.

It can require STARTTLS (with a self-signed certificate made by ``openssl``), require AUTH LOGIN
or PLAIN with a fixed user and password, and refuse the first N messages with ``451``.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SMTP_USER = "alerts"
SMTP_PASSWORD = "s3cret-smtp-pass"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    raw: bytes
    authenticated_as: str | None
    tls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())  # type: ignore[attr-defined]


@dataclass
class CaptureHandler:
    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refused < self.fail_first:
                self.refused += 1
                return "451 4.3.0 Temporary failure, try again later"
            auth = session.auth_data
            login = auth.login if isinstance(auth, LoginPassword) else None
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content),
                    login.decode() if isinstance(login, bytes) else login,
                    session.ssl is not None,
                )
            )
        return "250 2.0.0 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: CaptureHandler
    ca_file: Path | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def client_context(self) -> ssl.SSLContext:
        assert self.ca_file is not None
        return ssl.create_default_context(cafile=str(self.ca_file))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (needs the ``openssl`` command)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl not found")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == SMTP_USER.encode()
        and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


@contextmanager
def running_smtp_server(
    *, fail_first: int = 0, cert_dir: Path | None = None, require_auth: bool = False
) -> Iterator[SmtpServer]:
    """Start the server; with ``cert_dir`` it requires STARTTLS, with ``require_auth`` a login."""
    handler = CaptureHandler(fail_first=fail_first)
    port = free_port()
    kwargs: dict[str, Any] = {}
    ca_file = None
    if cert_dir is not None:
        ca_file, key = make_certificate(cert_dir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(ca_file), str(key))
        kwargs.update(tls_context=context, require_starttls=True)
    if require_auth:
        kwargs.update(
            authenticator=_authenticate, auth_required=True, auth_require_tls=cert_dir is not None
        )
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler, ca_file)
    finally:
        controller.stop()
