"""Sending one alert to one channel: e-mail over SMTP, a chat or paging service through Apprise,
or the monitor's own signed webhook over HTTP.

Every failure leaves as :class:`~monitor.alerts.delivery.DeliveryError` whose message shows the
channel's URL masked (:func:`~monitor.alerts.channels.mask_url`), never a token. URLs and the
webhook secret are read when sending, from the settings and the key's own channels: nothing
secret is kept in the ledger.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import apprise
import httpx

from monitor.alerts.channels import (
    EMAIL,
    Channel,
    ChannelError,
    channels_for_key,
    mask_url,
    parse_channel,
    parse_channels,
    split_urls,
    unique_names,
)
from monitor.alerts.delivery import DeliveryError, Email, Sender, SmtpSender
from monitor.alerts.document import (
    SCHEMA,
    SCHEMA_VERSION,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    chat_text,
    signature,
    webhook_body,
)
from monitor.alerts.routing import (
    Routes,
    RoutesError,
    parse_routes,
    routes_from_document,
    unknown_channels,
)
from monitor.config import Settings

logger = logging.getLogger("monitor.alerts")

NOTIFY_TYPES: Final = {"critical": "failure", "warning": "warning", "info": "info"}
USER_AGENT: Final = "longcat-monitor-webhook/1"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One alert as every channel may send it: the e-mail and the document."""

    delivery: str
    email: Email
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def notify_type(self) -> str:
        if self.document.get("event") == "recovery":
            return "success"
        return NOTIFY_TYPES.get(str(self.document.get("severity")), "info")


#: Anything that sends an :class:`Outgoing` to a :class:`Channel`, raising ``DeliveryError``.
ChannelSend = Callable[[Channel, Outgoing], None]


def _quiet_apprise() -> None:
    """Apprise logs full request URLs (tokens included) at DEBUG: never let those through."""
    log = logging.getLogger("apprise")
    if log.level == logging.NOTSET or log.level < logging.INFO:
        log.setLevel(logging.INFO)


class ChannelSender:
    """Sends with the settings in force at send time (``MONITOR_SMTP_*``,
    ``MONITOR_WEBHOOK_SECRET``, ``MONITOR_CHANNEL_TIMEOUT_S``)."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        smtp: Sender | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._smtp = smtp or SmtpSender(settings)
        self._clock = clock
        _quiet_apprise()

    def __call__(self, channel: Channel, outgoing: Outgoing) -> None:
        if channel.kind == "email":
            self._smtp(outgoing.email)
        elif channel.kind == "signed":
            self._signed(channel, outgoing)
        else:
            self._apprise(channel, outgoing)

    def _apprise(self, channel: Channel, outgoing: Outgoing) -> None:
        target = mask_url(channel.url)
        plugin = apprise.Apprise.instantiate(channel.url)
        if plugin is None:
            raise DeliveryError(f"{target} is not a URL Apprise can use", temporary=False)
        timeout = self._settings().channel_timeout_s
        plugin.socket_connect_timeout = timeout
        plugin.socket_read_timeout = timeout
        notifier = apprise.Apprise()
        notifier.add(plugin)
        problems: list[str] = []
        title, body = chat_text(outgoing.document)
        result = notifier.notify(
            body=body,
            title=title,
            notify_type=outgoing.notify_type,
            log_callback=lambda entry, _plugin: problems.append(str(entry.message)),
            log_level=logging.WARNING,
        )
        if not result:
            said = problems[-1] if problems else "the service did not accept the message"
            raise DeliveryError(f"{channel.name} ({target}): {said}")

    def _signed(self, channel: Channel, outgoing: Outgoing) -> None:
        settings = self._settings()
        target = mask_url(channel.url)
        if settings.webhook_secret is None:
            raise DeliveryError(
                f"{channel.name} ({target}): MONITOR_WEBHOOK_SECRET is not set", temporary=False
            )
        now = self._clock()
        body = webhook_body(outgoing.document, delivery=outgoing.delivery, now=now)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(int(now.timestamp())),
            SIGNATURE_HEADER: signature(settings.webhook_secret.get_secret_value(), body),
        }
        url = channel.url.partition("+")[2]
        try:
            response = httpx.post(
                url, content=body, headers=headers, timeout=settings.channel_timeout_s
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{channel.name} ({target}): {type(exc).__name__}") from exc
        if not response.is_success:
            code = response.status_code
            raise DeliveryError(
                f"{channel.name} ({target}): HTTP {code}",
                temporary=code >= 500 or code in (408, 429),
            )


@dataclass(frozen=True, slots=True)
class ChannelBook:
    """The channels in force: the common ones, each key's own, the routes, and what was wrong
    with the configuration (a bad URL or route is left out and reported, never fatal).

    ``by_key`` is keyed by the ledger's ``key_id``: a key's own channels under its key id, a
    pool's (``pools set-channels``) under ``pool:NAME``, the ``key_id`` its alerts are recorded
    with.
    """

    common: tuple[Channel, ...] = ()
    by_key: Mapping[str, tuple[Channel, ...]] = field(default_factory=dict)
    routes: Routes = field(default_factory=Routes)
    problems: tuple[str, ...] = ()

    def for_key(self, key_id: str) -> dict[str, Channel]:
        return channels_for_key(self.common, self.by_key.get(key_id, ()))

    def route(self, rule: str, severity: str, key_id: str) -> list[Channel]:
        """The channels an alert of ``rule`` for ``key_id`` goes to."""
        available = self.for_key(key_id)
        return [available[n] for n in self.routes.channels(rule, severity, available)]


def load_routes(settings: Settings) -> Routes:
    """``MONITOR_ROUTES_FILE`` (TOML), then ``MONITOR_ROUTES`` over it; ``RoutesError`` if bad."""
    routes = Routes()
    if settings.routes_file is not None:
        where = str(settings.routes_file)
        try:
            with settings.routes_file.open("rb") as fh:
                doc = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RoutesError(f"{where}: {exc}") from exc
        routes = routes_from_document(doc, where)
    if settings.routes.strip():
        routes = routes.merged(parse_routes(settings.routes))
    return routes


def load_channels(settings: Settings, key_urls: Mapping[str, Sequence[str]]) -> ChannelBook:
    """Every channel and route in force, from the settings and the keys' own URLs."""
    problems: list[str] = []
    common: list[Channel] = []
    text = settings.alert_urls.get_secret_value() if settings.alert_urls else ""
    for url in split_urls(text):
        try:
            common.append(parse_channel(url))
        except ChannelError as exc:
            problems.append(f"MONITOR_ALERT_URLS: {exc}")
    by_key: dict[str, tuple[Channel, ...]] = {}
    for key_id, urls in key_urls.items():
        try:
            by_key[key_id] = parse_channels(urls)
        except ChannelError as exc:
            problems.append(f"channels of key {key_id[:12]}: {exc}")
    try:
        routes = load_routes(settings)
    except RoutesError as exc:
        problems.append(f"{exc}; every alert goes to every channel until it is fixed")
        routes = Routes()
    names = {EMAIL, *(c.name for c in common)}
    names.update(c.name for own in by_key.values() for c in own)
    problems += [
        f"a route names {n!r}, which is no channel" for n in unknown_channels(routes, names)
    ]
    return ChannelBook(unique_names(common), by_key, routes, tuple(problems))


def sample_message(settings: Settings, now: datetime) -> Outgoing:
    """A test message for ``alerts test`` and the Alerts page's "send test" button."""
    zone = settings.tz
    when = now.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    text = f"This is a test message from the LongCat usage monitor, sent {when} ({zone.key})."
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "event": "test",
        "rule": "test",
        "severity": "info",
        "title": "LongCat monitor: test message",
        "text": text,
        "fields": [{"name": "Dashboard", "value": settings.dashboard_url}]
        if settings.dashboard_url
        else [],
        "dashboard_url": settings.dashboard_url,
    }
    email = Email(tuple(settings.alert_to), "LongCat monitor: test message", text, f"<p>{text}</p>")
    return Outgoing(f"test/{int(now.timestamp())}", email, document)
