"""Notification channels: named URLs from ``MONITOR_ALERT_URLS`` and a key's own, shown masked.

A channel is a name and a URL. Chat, paging and webhook services are Apprise URLs
(``slack://…``, ``discord://…``, ``tgram://…``, ``json://…``); ``signed+https://…`` is the
monitor's own signed webhook; ``email`` is the SMTP path (``MONITOR_SMTP_*``) and is always there.
A URL may be named (``ops=slack://…``); otherwise its name comes from its scheme (``slack``,
``telegram``, ``teams``, ``webhook``…), numbered when the same service appears twice.

URLs carry secrets (tokens in the path, passwords). :func:`mask_url` is the one place that
turns a URL into something fit for a log line, a page or an error message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

import apprise

EMAIL: Final = "email"
SIGNED_SCHEMES: Final = ("signed+https", "signed+http")
#: Schemes whose default channel name is not the scheme itself.
SCHEME_NAMES: Final = {
    "tgram": "telegram",
    "msteams": "teams",
    "workflow": "teams",
    "workflows": "teams",
    "jsons": "json",
    "forms": "form",
    "xmls": "xml",
    "ntfys": "ntfy",
    "wecombot": "wecom",
    "signed+https": "webhook",
    "signed+http": "webhook",
}
CHANNEL_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,63}")
#: Where a comma starts a new URL (``,`` then an optional ``name=`` then ``scheme://``); a comma
#: anywhere else belongs to the URL (Apprise lists targets with commas).
_URL_START: Final = re.compile(r",\s*(?=(?:[a-z][a-z0-9_-]*=)?[a-z][a-z0-9+.-]*://)", re.I)
_NAMED: Final = re.compile(r"([a-z][a-z0-9_-]*)=([a-z][a-z0-9+.-]*://.*)", re.I | re.S)

Kind = Literal["email", "apprise", "signed"]


class ChannelError(ValueError):
    """A notification URL that cannot be used; the message shows it masked."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A named place to send alerts. ``url`` is secret: show :attr:`target`, never ``url``."""

    name: str
    kind: Kind
    url: str = field(default="", repr=False)

    @property
    def target(self) -> str:
        return "e-mail (SMTP)" if self.kind == "email" else mask_url(self.url)


EMAIL_CHANNEL: Final = Channel(EMAIL, "email")


def split_urls(text: str) -> list[str]:
    """The URLs of a comma-separated list, keeping commas that belong to a URL.

    >>> split_urls("slack://a/b/c, ops=json://h/x?to=a,b")
    ['slack://a/b/c', 'ops=json://h/x?to=a,b']
    """
    return [part.strip() for part in _URL_START.split(text) if part.strip()]


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def default_name(url: str) -> str:
    """The channel name a URL gets when it is not named: its service."""
    scheme = _scheme(url)
    return SCHEME_NAMES.get(scheme, scheme)


def _segment(part: str) -> str:
    """A path segment, masked when it looks like a token (long, or letters mixed with digits)."""
    mixed = any(c.isdigit() for c in part) and any(c.isalpha() for c in part)
    if len(part) >= 16 or (len(part) >= 8 and mixed):
        return f"{part[0]}...{part[-1]}"
    return part


def mask_url(url: str) -> str:
    """``url`` with every secret part masked, and without its query.

    Apprise's own privacy form first (it knows which part of each service's URL is a token),
    then any token-like path segment; a URL nothing can parse shows its scheme alone.

    >>> mask_url("json://bot:hunter2@127.0.0.1:8080/hooks/Tq83hd02kdLw?token=abc")
    'json://bot:****@127.0.0.1:8080/hooks/T...w'
    >>> mask_url("signed+https://hooks.example.com/longcat/6f1c2e9a77b04d2b")
    'signed+https://hooks.example.com/longcat/6...b'
    """
    scheme = _scheme(url)
    if scheme in SIGNED_SCHEMES:
        shown = url
    else:
        plugin = _instantiate(url)
        if plugin is None:
            return f"{scheme}://****" if scheme else "****"
        shown = str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]
    try:
        parts = urlsplit(shown)
    except ValueError:
        return f"{scheme}://****"
    user = parts.username
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    if user:
        netloc = f"{_segment(user)}:****@{netloc}" if parts.password else f"{user}@{netloc}"
    path = "/".join(_segment(p) for p in parts.path.split("/"))
    return f"{parts.scheme}://{netloc}{path}".rstrip("/")


def _instantiate(url: str) -> apprise.plugins.NotifyBase | None:
    plugin: apprise.plugins.NotifyBase | None = apprise.Apprise.instantiate(url)
    return plugin


def parse_channel(text: str) -> Channel:
    """One URL, possibly named (``name=URL``), checked; :class:`ChannelError` when unusable."""
    named = _NAMED.fullmatch(text.strip())
    name, url = (named.group(1).lower(), named.group(2)) if named else ("", text.strip())
    scheme = _scheme(url)
    if "://" not in url:
        raise ChannelError(f"{url[:12]!r}… is not a notification URL (expected scheme://…)")
    if scheme in ("mailto", "mailtos"):
        raise ChannelError(
            "e-mail goes through MONITOR_SMTP_* and the key's --email recipients; "
            f"remove {mask_url(url)} from the channel URLs"
        )
    name = name or default_name(url)
    if CHANNEL_NAME.fullmatch(name) is None or name == EMAIL:
        raise ChannelError(f"{name!r} is not a usable channel name (letters, digits, - and _)")
    if scheme in SIGNED_SCHEMES:
        host = urlsplit(url.partition("+")[2]).hostname
        if not host:
            raise ChannelError(f"{mask_url(url)} has no host")
        return Channel(name, "signed", url)
    if _instantiate(url) is None:
        raise ChannelError(
            f"{mask_url(url)} is not a notification URL Apprise can use "
            "(see https://github.com/caronc/apprise/wiki for each service's URL form)"
        )
    return Channel(name, "apprise", url)


def parse_channels(urls: str | Iterable[str]) -> tuple[Channel, ...]:
    """Channels from a comma-separated text or a list of URLs, names made unique.

    >>> [c.name for c in parse_channels("json://h/a, json://h/b, ops=json://h/c")]
    ['json', 'json-2', 'ops']
    """
    texts = split_urls(urls) if isinstance(urls, str) else [u for u in urls if u.strip()]
    return unique_names([parse_channel(text) for text in texts])


def unique_names(channels: Iterable[Channel]) -> tuple[Channel, ...]:
    """The channels with a repeated name numbered (``slack``, ``slack-2``…)."""
    taken: set[str] = set()
    out = []
    for channel in channels:
        name, n = channel.name, 2
        while name in taken:
            name, n = f"{channel.name}-{n}", n + 1
        taken.add(name)
        out.append(Channel(name, channel.kind, channel.url))
    return tuple(out)


def channels_for_key(common: Sequence[Channel], own: Sequence[Channel]) -> dict[str, Channel]:
    """The channels of one key: the common ones, e-mail, and the key's own, which replace a
    common channel of the same name (as a key's recipients replace ``MONITOR_ALERT_TO``)."""
    result = {EMAIL: EMAIL_CHANNEL}
    result.update((c.name, c) for c in common)
    result.update((c.name, c) for c in own)
    return result
