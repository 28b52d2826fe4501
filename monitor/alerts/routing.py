"""Pure: which channels each alert goes to (``MONITOR_ROUTES``, ``MONITOR_ROUTES_FILE``).

A route maps a rule, a severity or ``default`` to channel names::

    MONITOR_ROUTES="threshold=slack,email; error_rate=pagerduty; critical=pagerduty,slack"

An alert goes to the channels of its rule if the rule has a route, else of its severity, else of
``default``, else to every channel there is. A recovery goes where the alert it ends went. Rule
names are strings: a rule added later (``spend``, ``balance``) is routed by name or severity
with no change here. Names of channels that do not exist are left out (and reported by
:func:`unknown_channels`), so a typo never stops the other channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

INFO: Final = "info"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
SEVERITIES: Final = (INFO, WARNING, CRITICAL)
DEFAULT: Final = "default"
RECOVERED_SUFFIX: Final = "_recovered"
#: Other names a route may use for a rule.
RULE_ALIASES: Final = {
    "threshold": "quota",
    "forecast": "burn_rate",
    "401": "auth_burst",
    "auth": "auth_burst",
    "exhausted": "quota_exhausted",
    "p95": "latency",
}
#: Severity by rule; a rule not listed (``spend``, ``balance``…) is a warning.
RULE_SEVERITY: Final = {
    "burn_rate": WARNING,
    "error_rate": CRITICAL,
    "auth_burst": CRITICAL,
    "quota_exhausted": CRITICAL,
    "latency": WARNING,
    "ttft": WARNING,
    "digest": INFO,
}
QUOTA_CRITICAL_PERCENT: Final = 100
QUOTA_WARNING_PERCENT: Final = 80


class RoutesError(ValueError):
    """Routes that cannot be read; the message says where and what was expected."""


def base_rule(rule: str) -> str:
    """The rule a recovery belongs to (``error_rate_recovered`` → ``error_rate``)."""
    return rule.removesuffix(RECOVERED_SUFFIX)


def severity_of(rule: str, threshold: int = 0) -> str:
    """``info``, ``warning`` or ``critical``.

    >>> severity_of("quota", 50), severity_of("quota", 100), severity_of("error_rate_recovered")
    ('info', 'critical', 'critical')
    """
    rule = base_rule(rule)
    if rule == "quota":
        if threshold >= QUOTA_CRITICAL_PERCENT:
            return CRITICAL
        return WARNING if threshold >= QUOTA_WARNING_PERCENT else INFO
    return RULE_SEVERITY.get(rule, WARNING)


@dataclass(frozen=True, slots=True)
class Routes:
    """Rule (or severity, or ``default``) → channel names. Empty: everything everywhere."""

    table: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def merged(self, other: Routes) -> Routes:
        """These routes with ``other``'s entries taking precedence."""
        return Routes({**self.table, **other.table})

    def channels(self, rule: str, severity: str, available: Iterable[str]) -> tuple[str, ...]:
        """The channels of ``available`` an alert of ``rule`` and ``severity`` goes to.

        >>> r = parse_routes("threshold=slack,email;critical=pagerduty")
        >>> r.channels("quota", "info", ["email", "slack", "pagerduty"])
        ('slack', 'email')
        >>> r.channels("error_rate", "critical", ["email", "slack", "pagerduty"])
        ('pagerduty',)
        >>> r.channels("digest", "info", ["email", "slack"])
        ('email', 'slack')
        """
        names = list(available)
        for entry in (base_rule(rule), severity, DEFAULT):
            if entry in self.table:
                return tuple(n for n in self.table[entry] if n in names)
        return tuple(names)


def _entry(name: str, where: str) -> str:
    key = name.strip().lower()
    key = RULE_ALIASES.get(key, key)
    if not key or not all(c.isalnum() or c in "_-" for c in key):
        raise RoutesError(f"{where}: {name!r} is not a rule, a severity or 'default'")
    return key


def _names(values: Iterable[str], where: str) -> tuple[str, ...]:
    names = tuple(v.strip().lower() for v in values if v.strip())
    for n in names:
        if not all(c.isalnum() or c in "_-" for c in n):
            raise RoutesError(f"{where}: {n!r} is not a channel name")
    return names


def parse_routes(text: str, where: str = "MONITOR_ROUTES") -> Routes:
    """``rule=channel,channel; severity=channel; default=channel`` (``;`` or new lines).

    >>> parse_routes("threshold=slack,email; error_rate=pagerduty").table["quota"]
    ('slack', 'email')
    """
    table: dict[str, tuple[str, ...]] = {}
    for part in text.replace("\n", ";").split(";"):
        if not part.strip():
            continue
        name, eq, values = part.partition("=")
        if not eq:
            raise RoutesError(f"{where}: expected rule=channel,channel, got {part.strip()!r}")
        table[_entry(name, where)] = _names(values.split(","), where)
    return Routes(table)


def routes_from_document(doc: Mapping[str, Any], where: str) -> Routes:
    """Routes from a parsed TOML document with ``[routes]`` (rule → channels) and
    ``[severity]`` (severity or ``default`` → channels) tables."""
    table: dict[str, tuple[str, ...]] = {}
    for section in ("routes", "severity"):
        entries = doc.get(section, {})
        if not isinstance(entries, Mapping):
            raise RoutesError(f"{where}: [{section}] must be a table")
        for name, values in entries.items():
            if isinstance(values, str):
                values = values.split(",")
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise RoutesError(f"{where}: {section}.{name} must be a list of channel names")
            table[_entry(name, where)] = _names(values, where)
    return Routes(table)


def unknown_channels(routes: Routes, available: Iterable[str]) -> list[str]:
    """Channel names the routes use that no channel has (to warn about, not to fail on)."""
    names = set(available)
    return sorted({n for values in routes.table.values() for n in values if n not in names})
