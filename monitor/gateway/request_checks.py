"""What the gateway refuses before forwarding: a path that could leave ``/openai/`` or
``/anthropic/`` once some server decodes or normalises it, and credentials that could be read as
two different keys (the quota guard and the record would count one, LongCat bill the other).

>>> path_problem(b"/openai/v1/chat/completions") is None
True
>>> path_problem(b"/openai/%2e%2e/admin")
"a '.' or '..' segment"
>>> credential_problem([(b"authorization", b"Bearer sk-a"), (b"x-api-key", b"sk-b")])
'both Authorization: Bearer and x-api-key, with different keys'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote_to_bytes

_DOT_SEGMENTS: Final = (b".", b"..")
_CREDENTIAL_HEADERS: Final = (b"authorization", b"x-api-key")


def path_problem(raw_path: bytes) -> str | None:
    """Why ``raw_path`` (as the client sent it, undecoded) is refused, else None.

    Refused: a backslash, a ``.`` or ``..`` segment, and a segment that decodes (once or more,
    ``%252e`` being ``%2e`` after one pass) to one of those or to something holding ``/`` or
    ``\\``. Whatever passes means the same path to every server on the way.
    """
    if b"\\" in raw_path:
        return "a backslash"
    for segment in raw_path.split(b"/"):
        while True:
            if segment in _DOT_SEGMENTS:
                return "a '.' or '..' segment"
            if b"/" in segment or b"\\" in segment:
                return "an encoded '/' or '\\' inside a segment"
            if b"%" not in segment:
                break
            decoded = unquote_to_bytes(segment)
            if decoded == segment:
                break
            segment = decoded
    return None


def credential_problem(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why the credentials in ``raw_headers`` (lower-case names) are ambiguous, else None:
    ``Authorization`` or ``x-api-key`` given twice, or both given with different keys."""
    authorization: bytes | None = None
    api_key: bytes | None = None
    for name, value in raw_headers:
        if name not in _CREDENTIAL_HEADERS:
            continue
        if name == b"authorization":
            if authorization is not None:
                return "the Authorization header twice"
            authorization = value
        else:
            if api_key is not None:
                return "the x-api-key header twice"
            api_key = value
    if authorization is None or api_key is None:
        return None
    scheme, _, bearer = authorization.strip().partition(b" ")
    billed = bearer.strip() if scheme.lower() == b"bearer" else authorization.strip()
    if billed != api_key.strip():
        return "both Authorization: Bearer and x-api-key, with different keys"
    return None
