"""CPU per call in the calling process, writer thread included, with and without instrument().

Against the simulator in another process (no artificial latency), for httpx and httpx2, sync and
async, streamed and not. Rounds alternate bare and instrumented clients so drift hits both; the
figure is the median over rounds. Records go to a real SQLite file through the real recorder,
flushed inside the timed section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2

import monitor
from bench.common import machine, median, print_table, simulator_process
from monitor.recording.recorder import Recorder, set_recorder
from monitor.recording.sql_sink import SqlSink

KEY = "sk-bench-0000000000000000-ABCD"
MESSAGES = [{"role": "user", "content": "Give me three words about benchmarks."}]
PATH = "/openai/v1/chat/completions"


def payload(stream: bool) -> dict[str, Any]:
    return {"model": "LongCat-Flash-Chat", "messages": MESSAGES, "stream": stream, "max_tokens": 24}


def sync_calls(client: Any, n: int, stream: bool) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    body = payload(stream)
    for _ in range(n):
        if stream:
            with client.stream("POST", PATH, json=body, headers=headers) as response:
                for _line in response.iter_lines():
                    pass
        else:
            client.post(PATH, json=body, headers=headers).json()


async def async_calls(client: Any, n: int, stream: bool) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    body = payload(stream)
    for _ in range(n):
        if stream:
            async with client.stream("POST", PATH, json=body, headers=headers) as response:
                async for _line in response.aiter_lines():
                    pass
        else:
            (await client.post(PATH, json=body, headers=headers)).json()


def cpu_per_call(
    http: types.ModuleType, base: str, is_async: bool, stream: bool, n: int, instrumented: bool
) -> float:
    """Seconds of process CPU (all threads) per call."""
    if is_async:

        async def run() -> float:
            async with http.AsyncClient(base_url=base) as client:
                if instrumented:
                    monitor.instrument(client)
                await async_calls(client, 20, stream)  # warm the connection pool
                start = time.process_time()
                await async_calls(client, n, stream)
                if instrumented:
                    monitor.flush(30)
                return (time.process_time() - start) / n

        return asyncio.run(run())
    with http.Client(base_url=base) as client:
        if instrumented:
            monitor.instrument(client)
        sync_calls(client, 20, stream)
        start = time.process_time()
        sync_calls(client, n, stream)
        if instrumented:
            monitor.flush(30)
        return (time.process_time() - start) / n


def canned_upstream(http: types.ModuleType, is_async: bool = False) -> Any:
    """An in-process LongCat stand-in: streamed responses come out event by event, as off a
    socket, so the monitored path is the same one a network response takes (an async iterator
    of them for an ``AsyncClient``)."""
    body = json.dumps(
        {
            "id": "chatcmpl-1",
            "model": "LongCat-Flash-Chat",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 24}}],
            "usage": {"prompt_tokens": 15, "completion_tokens": 24, "total_tokens": 39},
        }
    ).encode()

    def chunk(delta: dict[str, Any], usage: Any = None) -> bytes:
        event = {"id": "chatcmpl-1", "model": "LongCat-Flash-Chat", "choices": [delta]}
        if usage is not None:
            event = {"id": "chatcmpl-1", "choices": [], "usage": usage}
        return b"data: " + json.dumps(event).encode() + b"\n\n"

    events = [chunk({"index": 0, "delta": {"content": "word word "}}) for _ in range(10)]
    usage = chunk({}, {"prompt_tokens": 15, "completion_tokens": 24, "total_tokens": 39})

    async def pieces(stream: list[bytes]) -> AsyncIterator[bytes]:
        for piece in stream:
            yield piece

    def answer(request: Any) -> Any:
        if b'"stream": true' in request.content or b'"stream":true' in request.content:
            asked = b'"include_usage":true' in request.content.replace(b" ", b"")
            stream = [*events, *([usage] if asked else []), b"data: [DONE]\n\n"]
            headers = {"content-type": "text/event-stream"}
            content = pieces(stream) if is_async else iter(stream)
            return http.Response(200, content=content, headers=headers)
        return http.Response(200, content=body, headers={"content-type": "application/json"})

    return http.MockTransport(answer)


def in_process_cpu(http: types.ModuleType, stream: bool, n: int, instrumented: bool) -> float:
    with http.Client(base_url="http://longcat.test", transport=canned_upstream(http)) as client:
        if instrumented:
            monitor.instrument(client)
        sync_calls(client, 50, stream)
        start = time.process_time()
        sync_calls(client, n, stream)
        if instrumented:
            monitor.flush(30)
        return (time.process_time() - start) / n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, simulator_process() as base:
        recorder = Recorder(SqlSink(f"sqlite:///{Path(tmp) / 'bench.db'}"))
        set_recorder(recorder)
        rows = []
        for http in (httpx, httpx2):
            for is_async in (False, True):
                for stream in (False, True):
                    bare, wrapped = [], []
                    for _ in range(args.rounds):
                        bare.append(cpu_per_call(http, base, is_async, stream, args.calls, False))
                        wrapped.append(cpu_per_call(http, base, is_async, stream, args.calls, True))
                    b, w = median(bare), median(wrapped)
                    rows.append(
                        [
                            http.__name__,
                            "async" if is_async else "sync",
                            "stream" if stream else "body",
                            f"{b * 1e6:.0f}",
                            f"{w * 1e6:.0f}",
                            f"{w / b:.3f}x",
                            f"{(w - b) * 1e6:+.1f}",
                        ]
                    )
        in_process = []
        for http in (httpx, httpx2):
            for stream in (False, True):
                bare, wrapped = [], []
                for _ in range(args.rounds):
                    bare.append(in_process_cpu(http, stream, args.calls, False))
                    wrapped.append(in_process_cpu(http, stream, args.calls, True))
                b, w = median(bare), median(wrapped)
                in_process.append(
                    [
                        http.__name__,
                        "stream" if stream else "body",
                        f"{b * 1e6:.0f}",
                        f"{w * 1e6:.0f}",
                        f"{(w - b) * 1e6:+.1f}",
                    ]
                )
        recorder.shutdown(30)
        stats = recorder.stats()
    print_table(
        "The monitor's own cost, upstream in-process (no sockets: the least noisy figure), sync, "
        "writer thread and SQLite writes included",
        ["module", "kind", "bare us", "instrumented us", "added us"],
        in_process,
    )
    print_table(
        f"Wrapper overhead: CPU per call, median of {args.rounds} rounds x {args.calls} calls "
        f"({machine()}); target <= 1.05x and <= 30 us added",
        ["module", "mode", "kind", "bare us", "instrumented us", "ratio", "added us"],
        rows,
    )
    print(f"records written: {stats.written}, dropped: {stats.dropped}, failed: {stats.failed}")


if __name__ == "__main__":
    main()
