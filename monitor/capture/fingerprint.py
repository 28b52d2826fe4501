"""Stable, non-reversible key fingerprints: the only form in which a key is ever kept.

``key_id`` is an HMAC-SHA256 of the key. Without ``MONITOR_KEY_SECRET`` the HMAC key is a fixed,
public constant, so every host computes the same id with no set-up; API keys are long random
strings, so the id cannot be reversed. With a team secret set on every host, the id also cannot
be checked against a guessed or leaked key by someone who only has the database.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

DEFAULT_FINGERPRINT_SECRET: Final = b"longcat-monitor/key-fingerprint/v1"
KEY_ID_PREFIX: Final = "k_"
KEY_ID_HEX_CHARS: Final = 24
HINT_CHARS: Final = 4


def key_id(raw_key: str, secret: str | None = None) -> str:
    """The fingerprint stored in place of ``raw_key``.

    >>> key_id("sk-test-123") == key_id("sk-test-123")
    True
    """
    hmac_key = secret.encode() if secret else DEFAULT_FINGERPRINT_SECRET
    digest = hmac.new(hmac_key, raw_key.strip().encode(), hashlib.sha256).hexdigest()
    return KEY_ID_PREFIX + digest[:KEY_ID_HEX_CHARS]


def key_hint(raw_key: str) -> str:
    """The last four characters, enough for a person to tell keys apart."""
    return raw_key.strip()[-HINT_CHARS:]


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The API key a request is billed to: the ``Authorization: Bearer`` one, which is what
    LongCat bills, else ``x-api-key`` (sent alone by the Anthropic SDK).

    >>> key_from_headers("Bearer sk-billed", "sk-other")
    'sk-billed'
    """
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None
