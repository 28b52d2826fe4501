"""E-mail delivery over SMTP (smtplib), with STARTTLS and login.

The SMTP settings, the password included, are read from the settings object each time a message
is sent: nothing secret is kept in a sender, a ledger row or the scheduler's job store. Every
failure leaves as :class:`DeliveryError`, whose message never contains the password.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Final

from monitor.config import Settings, get_settings

logger = logging.getLogger("monitor.alerts")

DEFAULT_SMTP_TIMEOUT_S: Final = 30.0
MAX_ERROR_CHARS: Final = 500


class DeliveryError(Exception):
    """An e-mail could not be handed to the SMTP server.

    ``temporary`` is false for answers a retry will not change (5xx refusals, no SMTP host set);
    the ledger still retries those a bounded number of times, since a 5xx may be a misconfiguration
    fixed in the meantime.
    """

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message[:MAX_ERROR_CHARS])
        self.temporary = temporary


@dataclass(frozen=True, slots=True)
class Email:
    """One e-mail to send: what the ledger stores so a retry sends exactly the same."""

    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str


#: Anything that sends an :class:`Email` and raises :class:`DeliveryError` on failure.
Sender = Callable[[Email], None]


def build_message(email: Email, sender: str) -> EmailMessage:
    """A multipart/alternative message (plain text first, then HTML)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(email.recipients)
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


class SmtpSender:
    """Sends with the ``MONITOR_SMTP_*`` settings in force at send time.

    >>> send = SmtpSender()          # doctest: +SKIP
    >>> send(Email(("ops@example.com",), "subject", "text", "<p>html</p>"))  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: Callable[[], Settings] = get_settings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_SMTP_TIMEOUT_S,
    ) -> None:
        self._settings = settings
        self._ssl_context = ssl_context
        self._timeout = timeout

    def __call__(self, email: Email) -> None:
        settings = self._settings()
        if not settings.smtp_host:
            raise DeliveryError("MONITOR_SMTP_HOST is not set", temporary=False)
        if not email.recipients:
            raise DeliveryError("no recipients", temporary=False)
        try:
            message = build_message(email, settings.alert_from)
        except (ValueError, TypeError) as exc:  # a header no e-mail may carry
            raise DeliveryError(f"cannot build the e-mail: {exc}", temporary=False) from exc
        try:
            with smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=self._timeout
            ) as smtp:
                smtp.ehlo()
                if settings.smtp_starttls:
                    smtp.starttls(context=self._ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if settings.smtp_user:
                    password = (
                        settings.smtp_password.get_secret_value()
                        if (settings.smtp_password)
                        else ""
                    )
                    smtp.login(settings.smtp_user, password)
                refused = smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}", temporary=exc.smtp_code < 500
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(_refused(exc.recipients), temporary=False) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if refused:
            # Delivered to the others; retrying would send a second copy to them, so only log.
            logger.warning("SMTP server refused some recipients: %s", _refused(refused))


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _refused(recipients: dict[str, tuple[int, bytes]]) -> str:
    parts: Sequence[str] = [
        f"{addr}: {code} {_text(msg)}" for addr, (code, msg) in recipients.items()
    ]
    return "all recipients refused: " + "; ".join(parts)
