"""Pure: the alert document (schema ``longcat-monitor.alert`` version 1) and its signature.

The document is decided with the alert and kept in the ledger, so every attempt on every channel
says the same. The signed webhook posts it as JSON, with ``sent_at``/``timestamp`` and a
``delivery`` id added at send time; chat channels show its ``title``, ``text`` and ``fields``.

Version 1 fields: ``schema``, ``version``, ``event`` (``alert``, ``reminder`` or ``recovery``),
``rule``, ``severity``, ``threshold``, ``key`` (``id``: the fingerprint, ``name``, ``hint``; or
null for a per-model rule), ``model``, ``day``, ``title``, ``text``, ``fields`` (a list of
``{"name", "value"}``), ``figures`` (numbers: ``used_tokens``, ``quota``, ``percent``, and per
rule ``exhaust_at``, ``tokens_per_hour``, ``window_start``, ``window_minutes``, ``window_calls``,
``window_errors``, ``window_unauthorized``, ``p95_ms``), ``reset_at`` (UTC, ISO 8601),
``reset_local`` and ``dashboard_url``. New fields may be added within a version; a field is never
removed or changed in meaning without a new version.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date, datetime
from typing import Any, Final

from monitor.alerts.messages import AlertFacts, chat, zone_label
from monitor.alerts.rules import RECOVERED

SCHEMA: Final = "longcat-monitor.alert"
SCHEMA_VERSION: Final = 1
SIGNATURE_HEADER: Final = "X-Monitor-Signature"
TIMESTAMP_HEADER: Final = "X-Monitor-Timestamp"
#: How far a receiver should accept a timestamp from its own clock (the README's snippet).
REPLAY_WINDOW_S: Final = 300


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def event_of(facts: AlertFacts) -> str:
    if facts.recovered:
        return "recovery"
    return "reminder" if facts.reason == "reminder" else "alert"


def build_document(facts: AlertFacts, *, key_id: str, severity: str) -> dict[str, Any]:
    """The version-1 document of an alert (plain JSON types only)."""
    f = facts
    message = chat(f)
    figures: dict[str, Any] = {
        "used_tokens": f.used,
        "quota": f.quota,
        "percent": round(f.percent, 4),
    }
    optional = {
        "exhaust_at": _iso(f.forecast_at),
        "tokens_per_hour": f.tokens_per_hour,
        "window_start": _iso(f.window_start),
        "window_minutes": f.window_minutes or None,
        "window_calls": f.window_calls if f.window_start else None,
        "window_errors": f.window_errors if f.window_start else None,
        "window_unauthorized": f.window_unauthorized if f.window_start else None,
        "p95_ms": f.p95_ms,
    }
    figures.update((k, v) for k, v in optional.items() if v is not None)
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "event": event_of(f),
        "rule": f.rule,
        "severity": severity,
        "threshold": f.threshold,
        "key": None if f.model else {"id": key_id, "name": f.key_name, "hint": f.key_hint},
        "model": f.model,
        "day": f.day.isoformat(),
        "title": message.title,
        "text": message.text,
        "fields": [{"name": k, "value": v} for k, v in message.fields],
        "figures": figures,
        "reset_at": _iso(f.reset_at),
        "reset_local": f"00:00 {zone_label(f.tz)}",
        "dashboard_url": f.dashboard_url,
    }


def document_from_email(
    rule: str,
    severity: str,
    threshold: int,
    key_id: str,
    day: date,
    title: str,
    text: str,
    dashboard_url: str | None,
) -> dict[str, Any]:
    """A version-1 document for an alert decided outside :mod:`monitor.ledger.jobs` (pools and
    money, with e-mail text only): its first sentence, no fields or figures of its own."""
    fields = [{"name": "Dashboard", "value": dashboard_url}] if dashboard_url else []
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "event": "recovery" if rule.endswith(RECOVERED) else "alert",
        "rule": rule,
        "severity": severity,
        "threshold": threshold,
        "key": {"id": key_id, "name": None, "hint": None},
        "model": None,
        "day": day.isoformat(),
        "title": title,
        "text": text.split("\n", 1)[0],
        "fields": fields,
        "figures": {},
        "dashboard_url": dashboard_url,
    }


def chat_text(document: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of a chat message: the sentence, then one ``name: value`` line per field."""
    lines = [str(document.get("text", ""))]
    fields = document.get("fields") or []
    if fields:
        lines.append("")
        lines += [f"{f['name']}: {f['value']}" for f in fields]
    return str(document.get("title", "")), "\n".join(lines)


def webhook_body(document: dict[str, Any], *, delivery: str, now: datetime) -> bytes:
    """The signed webhook's body: the document with when it was sent and a delivery id (the
    same on every retry, for a receiver that de-duplicates)."""
    sent = {
        **document,
        "delivery": delivery,
        "sent_at": _iso(now),
        "timestamp": int(now.timestamp()),
    }
    return json.dumps(sent, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``, the value of ``X-Monitor-Signature``.

    >>> signature("s3cret", b'{"a":1}')
    'sha256=5910e62016ef5034272c926c27071992a465c2335cecf41851bda071577f4f6d'
    """
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str, body: bytes, signature_header: str, timestamp_header: str, now: float
) -> bool:
    """What a receiver checks: the signature, the timestamp in the body equal to the header's,
    and that timestamp within :data:`REPLAY_WINDOW_S` of ``now`` (Unix seconds)."""
    if not hmac.compare_digest(signature(secret, body), signature_header):
        return False
    try:
        stamp = int(json.loads(body)["timestamp"])
    except (ValueError, KeyError, TypeError):
        return False
    return str(stamp) == timestamp_header and abs(now - stamp) <= REPLAY_WINDOW_S
