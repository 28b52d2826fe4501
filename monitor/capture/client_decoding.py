"""Which compressed bodies the caller's HTTP client decodes by itself.

The monitor may decode a body in the client's place (to take out the usage chunk it asked for)
only where the client would have decoded it too: the caller then reads the same decoded bytes.
A body in a coding the client would not decode reaches the caller as the server sent it.

>>> ClientDecoding(frozenset({"gzip", "br"})).decodes("br")
True
>>> ClientDecoding(frozenset({"gzip", "br"})).decodes("gzip, zstd")
False
"""

from __future__ import annotations

import functools
import re
import types
from dataclasses import dataclass
from typing import Final

from monitor.capture.decoding import DECODABLE, content_codings

#: What every httpx and httpx2 version decodes, for a module whose decoders cannot be read.
BASELINE_CODINGS: Final = frozenset({"gzip", "deflate"})
_REFUSED: Final = re.compile(r"\s*q\s*=\s*0(?:\.0{0,3})?\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True, eq=False)
class ClientDecoding:
    """A client's content codings (the monitor decodes only those it knows as well) and the most
    of them it applies to one body (httpx2 refuses a longer chain; None: no limit).

    Compared and hashed by identity: each one in use is made once (the functions below cache
    them), and a cache keyed by one then costs no hash of its fields on every call.
    """

    codings: frozenset[str]
    max_codings: int | None = None

    def decodes(self, content_encoding: str | None) -> bool:
        """Whether the client, and the monitor in its place, would decode a body of this
        ``Content-Encoding`` in full (with no error the client would raise)."""
        codings = content_codings(content_encoding)
        if self.max_codings is not None and len(codings) > self.max_codings:
            return False
        return all(coding in self.codings and coding in DECODABLE for coding in codings)


#: A client that decodes every coding the monitor does.
EVERY_CODING: Final = ClientDecoding(DECODABLE)


@functools.cache
def module_decoding(http: types.ModuleType) -> ClientDecoding:
    """What clients of ``http`` (httpx or httpx2) decode: the codings its ``_decoders`` module
    lists (httpx2 decodes zstd only with its optional zstd extra), else the baseline."""
    decoders = getattr(http, "_decoders", None)
    supported = getattr(decoders, "SUPPORTED_DECODERS", None)
    codings = (
        frozenset(name.lower() for name in supported if isinstance(name, str))
        if isinstance(supported, dict)
        else BASELINE_CODINGS
    )
    limit = getattr(getattr(decoders, "MultiDecoder", None), "max_decode_links", None)
    return ClientDecoding(codings - {"identity"}, limit if isinstance(limit, int) else None)


@functools.lru_cache(maxsize=64)  # a process sees few Accept-Encoding values, on every call
def accepted_codings(accept_encoding: str | None) -> frozenset[str]:
    """The codings an ``Accept-Encoding`` value accepts (lower-case; ``*`` for any other one),
    those it refuses (``q=0``) and ``identity`` left out.

    >>> sorted(accepted_codings("gzip, zstd;q=0, br;q=0.5, identity"))
    ['br', 'gzip']
    """
    accepted = set()
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        if coding and coding != "identity" and not _REFUSED.fullmatch(parameters):
            accepted.add(coding)
    return frozenset(accepted)


@functools.lru_cache(maxsize=64)  # one decoding a module, few Accept-Encoding values, every call
def invites_undecoded(decoding: ClientDecoding, accept_encoding: str | None) -> bool:
    """Whether a request's ``Accept-Encoding`` lets the server choose a coding ``decoding``
    does not decode (``*`` lets it choose any): the caller would then read such a body itself.

    >>> invites_undecoded(ClientDecoding(frozenset({"gzip"})), "gzip, zstd;q=0")
    False
    >>> invites_undecoded(ClientDecoding(frozenset({"gzip"})), "gzip, zstd")
    True
    """
    return any(
        coding == "*" or not decoding.decodes(coding)
        for coding in accepted_codings(accept_encoding)
    )


@functools.lru_cache(maxsize=64)
def request_decoding(accept_encoding: str | None) -> ClientDecoding:
    """What a client known only by its request decodes (the gateway's clients): the codings
    its ``Accept-Encoding`` accepts, every one for ``*``, none without the header.

    >>> request_decoding("gzip, br").decodes("zstd")
    False
    """
    accepted = accepted_codings(accept_encoding)
    return EVERY_CODING if "*" in accepted else ClientDecoding(accepted)
