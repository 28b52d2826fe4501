"""Part 1: the CPU each in-process wrapper adds to an openai SDK call, against a bare client.

Every wrapper (and the bare client) lives in its own worker process, since two of them patch the
openai module for the whole process; only one worker runs at a time. A round asks each worker,
in an order rotated every round, for a block of calls of one kind; the worker times its own
process CPU (``time.process_time``: every thread, the exporters' included) over the calls and
the flush that writes or exports what they recorded. The figure per wrapper is the median over
rounds of its per-call CPU, and the added cost the median of the per-round differences from the
bare worker of the same round.

Every peer is also checked for doing its job on each kind of call: after each block the parent
reads what the block recorded (the monitor's rows in SQLite, the other peers' spans at the sink)
and keeps, per kind, the calls made, the calls recorded with token usage and their tokens. A peer
that records less than every call is not comparable on that kind; the worker also says whether
the peer replaced the SDK method the kind calls, to tell "not instrumented" from "lost on the way".

Worker: ``python -m bench.peers.wrappers PEER SIMULATOR_URL SINK_URL``.
"""

from __future__ import annotations

import inspect
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

KEY = "sk-bench-peers-0000000000000000"
MODEL = "LongCat-Flash-Chat"
MESSAGES = [{"role": "user", "content": "Give me three words about benchmarks."}]
MAX_TOKENS = 24
PEERS = ("bare", "monitor", "otel", "langfuse")
PEER_LABELS = {
    "bare": "bare openai client",
    "monitor": "monitor.instrument()",
    "otel": "opentelemetry-instrumentation-openai-v2",
    "langfuse": "langfuse.openai",
}
PEER_PACKAGES = {
    "monitor": "longcat-monitor",
    "otel": "opentelemetry-instrumentation-openai-v2",
    "langfuse": "langfuse",
}


def chat_body(client: Any) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS)


def chat_stream(client: Any) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    for _chunk in stream:
        pass


def responses_body(client: Any) -> None:
    client.responses.create(model=MODEL, input=MESSAGES[0]["content"], max_output_tokens=MAX_TOKENS)


def responses_stream(client: Any) -> None:
    stream = client.responses.create(
        model=MODEL, input=MESSAGES[0]["content"], max_output_tokens=MAX_TOKENS, stream=True
    )
    for _event in stream:
        pass


CHAT = "openai.resources.chat.completions.Completions.create"
RESPONSES = "openai.resources.responses.Responses.create"


@dataclass(frozen=True)
class Kind:
    name: str
    call: Callable[[Any], None]
    path: str  # the simulator must serve it, else the row is skipped and the report says so
    method: str  # the SDK method a peer that patches openai has to wrap to see the call


KINDS = (
    Kind("chat body", chat_body, "/openai/v1/chat/completions", CHAT),
    Kind("chat stream", chat_stream, "/openai/v1/chat/completions", CHAT),
    Kind("responses body", responses_body, "/openai/v1/responses", RESPONSES),
    Kind("responses stream", responses_stream, "/openai/v1/responses", RESPONSES),
)


def _sdk_method(path: str) -> object:
    """The object the class holds under that name (a wrapper, once a peer has patched it)."""
    module, cls, name = path.rsplit(".", 2)
    return inspect.getattr_static(getattr(import_module(module), cls), name)


# --- the worker ---------------------------------------------------------------------------------


def _client_and_flush(peer: str, simulator: str, sink: str) -> tuple[Any, Callable[[], Any]]:
    """The client each peer's own documentation shows, and the call that ends its buffering."""
    base_url = simulator + "/openai/v1"
    if peer == "bare":
        import openai

        return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0), lambda: None
    if peer == "monitor":
        import openai

        import monitor

        client = monitor.instrument(openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0))
        return client, lambda: monitor.flush(60)
    if peer == "otel":
        import openai
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=sink + "/otel/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        OpenAIInstrumentor().instrument()
        client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        return client, lambda: provider.force_flush(60_000)
    if peer == "langfuse":
        os.environ.update(
            LANGFUSE_PUBLIC_KEY="pk-lf-bench",
            LANGFUSE_SECRET_KEY="sk-lf-bench",
            LANGFUSE_BASE_URL=sink + "/langfuse",
        )
        from langfuse import get_client
        from langfuse.openai import openai as langfuse_openai

        client = langfuse_openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        return client, get_client().flush
    raise ValueError(f"unknown peer {peer!r}")


def _serve(peer: str, simulator: str, sink: str) -> None:
    from bench.peers.worker import serve

    unpatched = {kind.method: _sdk_method(kind.method) for kind in KINDS}
    client, flush = _client_and_flush(peer, simulator, sink)
    kinds = {kind.name: kind.call for kind in KINDS}

    def run(kind: str, calls: int) -> float:
        """Process CPU seconds for ``calls`` calls and the flush after them."""
        call = kinds[kind]
        start = time.process_time()
        for _ in range(calls):
            call(client)
        flush()
        return time.process_time() - start

    def recorded() -> dict[str, int] | None:
        """Rows, rows with tokens and tokens the monitor wrote (other peers: at the sink)."""
        url = os.environ.get("MONITOR_DATABASE_URL", "")
        if peer != "monitor" or not url.startswith("sqlite:///"):
            return None
        with sqlite3.connect(Path(url.removeprefix("sqlite:///"))) as db:
            rows, usage, tokens = db.execute(
                "SELECT count(*), count(total_tokens), coalesce(sum(total_tokens), 0)"
                " FROM api_calls"
            ).fetchone()
        return {"rows": rows, "usage": usage, "tokens": tokens}

    def patched() -> dict[str, bool]:
        """Per kind, whether this process's SDK method for it was replaced (by the peer)."""
        return {kind.name: _sdk_method(kind.method) is not unpatched[kind.method] for kind in KINDS}

    serve({"run": run, "recorded": recorded, "patched": patched})


# --- the parent ---------------------------------------------------------------------------------


@dataclass
class Recorded:
    """What a peer recorded of one kind of call, over every block of it (warm-up included)."""

    calls: int = 0
    usage: int = 0  # calls recorded with token usage
    tokens: int = 0

    @property
    def complete(self) -> bool:
        return self.calls > 0 and self.usage == self.calls


Counter = Callable[[str], Mapping[str, int] | None]  # peer -> its running totals, None: bare


@dataclass
class KindResult:
    kind: str
    calls: int
    rounds: int
    per_call_s: dict[str, list[float]] = field(default_factory=dict)
    recorded: dict[str, Recorded] = field(default_factory=dict)

    def median(self, peer: str) -> float:
        return sorted(self.per_call_s[peer])[len(self.per_call_s[peer]) // 2]

    def added(self, peer: str) -> float:
        """Median over rounds of (peer - bare) in the same round, seconds per call."""
        diffs = sorted(
            p - b for p, b in zip(self.per_call_s[peer], self.per_call_s["bare"], strict=True)
        )
        return diffs[len(diffs) // 2]


def measure(
    workers: dict[str, Any],
    kinds: list[Kind],
    calls: int,
    rounds: int,
    warmup: int,
    count: Counter,
) -> list[KindResult]:
    """Time each worker's blocks; ``count(peer)`` gives the peer's running totals of records
    (``usage``: with tokens, ``tokens``), read after every block to credit it to its kind."""
    names = list(workers)
    results = {
        kind.name: KindResult(
            kind.name, calls, rounds, {n: [] for n in names}, {n: Recorded() for n in names}
        )
        for kind in kinds
    }
    totals = {name: count(name) for name in names}

    def run(name: str, kind: str, n: int) -> float:
        cpu: float = workers[name].call("run", kind=kind, calls=n)
        after = count(name)
        before = totals[name]
        if after is not None and before is not None:
            got = results[kind].recorded[name]
            got.usage += after["usage"] - before["usage"]
            got.tokens += after["tokens"] - before["tokens"]
        results[kind].recorded[name].calls += n
        totals[name] = after
        return cpu

    for kind in kinds:
        for name in names:
            run(name, kind.name, warmup)
    for r in range(rounds):
        for kind in kinds:
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                results[kind.name].per_call_s[name].append(run(name, kind.name, calls) / calls)
    return list(results.values())


if __name__ == "__main__":
    _serve(*sys.argv[1:4])
