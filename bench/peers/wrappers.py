"""Part 1: the CPU each in-process wrapper adds to an openai SDK call, against a bare client.

Every wrapper (and the bare client) lives in its own worker process, since two of them patch the
openai module for the whole process; only one worker runs at a time. A round asks each worker,
in an order rotated every round, for a block of calls of one kind; the worker times its own
process CPU (``time.process_time``: every thread, the exporters' included) over the calls and
the flush that writes or exports what they recorded. The figure per wrapper is the median over
rounds of its per-call CPU, and the added cost the median of the per-round differences from the
bare worker of the same round.

Worker: ``python -m bench.peers.wrappers PEER SIMULATOR_URL SINK_URL``.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Kind:
    name: str
    call: Callable[[Any], None]
    path: str  # the simulator must serve it, else the row is skipped and the report says so


KINDS = (
    Kind("chat body", chat_body, "/openai/v1/chat/completions"),
    Kind("chat stream", chat_stream, "/openai/v1/chat/completions"),
    Kind("responses body", responses_body, "/openai/v1/responses"),
    Kind("responses stream", responses_stream, "/openai/v1/responses"),
)


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
        """Rows and tokens the monitor wrote (other peers are counted at the sink)."""
        url = os.environ.get("MONITOR_DATABASE_URL", "")
        if peer != "monitor" or not url.startswith("sqlite:///"):
            return None
        with sqlite3.connect(Path(url.removeprefix("sqlite:///"))) as db:
            rows, tokens = db.execute(
                "SELECT count(*), coalesce(sum(total_tokens), 0) FROM api_calls"
            ).fetchone()
        return {"rows": rows, "tokens": tokens}

    serve({"run": run, "recorded": recorded})


# --- the parent ---------------------------------------------------------------------------------


@dataclass
class KindResult:
    kind: str
    calls: int
    rounds: int
    per_call_s: dict[str, list[float]] = field(default_factory=dict)

    def median(self, peer: str) -> float:
        return sorted(self.per_call_s[peer])[len(self.per_call_s[peer]) // 2]

    def added(self, peer: str) -> float:
        """Median over rounds of (peer - bare) in the same round, seconds per call."""
        diffs = sorted(
            p - b for p, b in zip(self.per_call_s[peer], self.per_call_s["bare"], strict=True)
        )
        return diffs[len(diffs) // 2]


def measure(
    workers: dict[str, Any], kinds: list[Kind], calls: int, rounds: int, warmup: int
) -> list[KindResult]:
    names = list(workers)
    for kind in kinds:
        for worker in workers.values():
            worker.call("run", kind=kind.name, calls=warmup)
    results = [KindResult(kind.name, calls, rounds, {n: [] for n in names}) for kind in kinds]
    for r in range(rounds):
        for kind, result in zip(kinds, results, strict=True):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                cpu = workers[name].call("run", kind=kind.name, calls=calls)
                result.per_call_s[name].append(cpu / calls)
    return results


if __name__ == "__main__":
    _serve(*sys.argv[1:4])
