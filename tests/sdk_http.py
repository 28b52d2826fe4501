"""What a test needs to know about the HTTP stack an installed SDK is built on, so the same tests
run on both generations (DESIGN.md, "The two HTTP stacks"): openai 1.x/2.x and anthropic 0.x on
``httpx``, openai 3.x and anthropic 1.x/2.x on ``httpx2``."""

from __future__ import annotations

from types import ModuleType


def http_module(sdk: ModuleType) -> ModuleType:
    """The module (``httpx`` or ``httpx2``) whose clients ``sdk`` (``openai`` or ``anthropic``)
    accepts as ``http_client`` and whose errors it raises: the one its base client imports."""
    base = sdk._base_client
    for name in ("httpx2", "httpx"):
        module = getattr(base, name, None)
        if isinstance(module, ModuleType):
            return module
    raise AssertionError(f"{sdk.__name__} {sdk.__version__} imports neither httpx2 nor httpx")


def cut_stream_errors(sdk: ModuleType) -> tuple[type[BaseException], ...]:
    """What ``sdk`` raises to its caller when a stream is cut midway: its ``APIConnectionError``
    (the newer SDKs wrap the transport's error in it) or the ``TransportError`` of its own HTTP
    module (the older ones let that through). The monitor must not change which."""
    return (sdk.APIConnectionError, http_module(sdk).TransportError)
