"""Which tool made a call: its ``User-Agent`` header as a short name and version.

Pure: a header value in, a name out. The usual tools get the names a team knows them by
(``claude-code 2.1.328``, ``openai-python 3.63.0``); anything else is its first product token
(``curl 8.5.0``, ``python-httpx 0.28.1``).
"""

from __future__ import annotations

import functools
import re
from typing import Final

#: The longest client name stored; longer product tokens are cut.
MAX_CLIENT_CHARS: Final = 64

_PRODUCT: Final = re.compile(r"\s*([^\s/()]+)(?:/([^\s()]+))?")
#: Product names (lower-case) to the names they are shown as.
_KNOWN: Final = {
    "claude-cli": "claude-code",
    "agents": "openai-agents",  # the Agents SDK sends "Agents/Python <version>"
    "openai-agents": "openai-agents",
}
#: SDKs that name themselves ``<Vendor>/<Language> <version>`` (their async clients
#: ``Async<Vendor>/<Language> <version>``).
_SDK_VENDORS: Final = frozenset({"openai", "anthropic", "agents"})


@functools.lru_cache(maxsize=256)  # a host sees few distinct User-Agents, on every call
def client_name(user_agent: str | None) -> str | None:
    """The tool named by a ``User-Agent`` value (``None`` when there is none).

    >>> client_name("claude-cli/2.1.328 (external, sdk-cli)")
    'claude-code 2.1.328'
    >>> client_name("OpenAI/Python 3.63.0")
    'openai-python 3.63.0'
    >>> client_name("Agents/Python 0.24.0")
    'openai-agents 0.24.0'
    >>> client_name("curl/8.5.0")
    'curl 8.5.0'
    """
    if not user_agent:
        return None
    first = _PRODUCT.match(user_agent)
    if first is None:
        return None
    product, version = first.group(1), first.group(2)
    lowered = product.lower()
    if lowered.startswith("async") and lowered[5:] in _SDK_VENDORS:
        lowered = lowered[5:]
    rest = user_agent[first.end() :].split()
    if lowered in _SDK_VENDORS and version and rest:
        # "OpenAI/Python 3.63.0": the language after the slash, the version after the space
        language = version.lower()
        name = _KNOWN.get(lowered) or f"{lowered}-{language}"
        return _cut(f"{name} {rest[0]}")
    name = _KNOWN.get(lowered, product)
    return _cut(f"{name} {version}" if version else name)


def _cut(name: str) -> str:
    return name[:MAX_CLIENT_CHARS]
