"""Resident memory after many instrumented calls, against the same run with a bare client.

The inner transport answers in-process with canned LongCat responses (half streamed, half not),
so a million calls take minutes rather than hours; everything above it, the monitored transport,
the observer, the recorder and its SQLite writes, is the real thing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import httpx2

import monitor
from bench.common import machine, print_table
from monitor.recording.recorder import Recorder, set_recorder
from monitor.recording.sql_sink import SqlSink

KEY = "sk-bench-memory-000000000000-MEMO"
BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "model": "LongCat-Flash-Chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 40}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
    }
).encode()
CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "model": "LongCat-Flash-Chat",
    "choices": [{"index": 0, "delta": {"content": "word word "}}],
}
USAGE = {
    "id": "chatcmpl-1",
    "choices": [],
    "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
}
STREAM = b"".join(
    [b"data: " + json.dumps(CHUNK).encode() + b"\n\n"] * 20
    + [b"data: " + json.dumps(USAGE).encode() + b"\n\n", b"data: [DONE]\n\n"]
)


def answer(request: httpx2.Request) -> httpx2.Response:
    if b'"stream": true' in request.content or b'"stream":true' in request.content:
        return httpx2.Response(200, content=STREAM, headers={"content-type": "text/event-stream"})
    return httpx2.Response(200, content=BODY, headers={"content-type": "application/json"})


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def drive(client: httpx2.Client, calls: int, label: str) -> tuple[float, float]:
    """(RSS after a warm-up, RSS at the end), in MB."""
    headers = {"authorization": f"Bearer {KEY}"}
    messages = [{"role": "user", "content": "hello"}]
    start_rss = 0.0
    started = time.monotonic()
    for i in range(calls):
        stream = i % 2 == 1
        body = {"model": "LongCat-Flash-Chat", "messages": messages, "stream": stream}
        if stream:
            with client.stream(
                "POST", "/openai/v1/chat/completions", json=body, headers=headers
            ) as response:
                for _ in response.iter_bytes():
                    pass
        else:
            client.post("/openai/v1/chat/completions", json=body, headers=headers).read()
        if i == 1000:
            monitor.flush(30)
            gc.collect()
            start_rss = rss_mb()
        if i and i % 100_000 == 0:
            rate = i / (time.monotonic() - started)
            print(f"  {label}: {i:,} calls, {rss_mb():.1f} MB, {rate:,.0f} calls/s", flush=True)
    monitor.flush(60)
    gc.collect()
    return start_rss, rss_mb()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(SqlSink(f"sqlite:///{Path(tmp) / 'memory.db'}"))
        set_recorder(recorder)
        transport = httpx2.MockTransport(answer)
        with httpx2.Client(base_url="http://longcat.test", transport=transport) as bare:
            bare_start, bare_end = drive(bare, args.calls, "bare")
        wrapped = monitor.instrument(
            httpx2.Client(base_url="http://longcat.test", transport=httpx2.MockTransport(answer))
        )
        with wrapped:
            start, end = drive(wrapped, args.calls, "instrumented")
        recorder.shutdown(60)
        stats = recorder.stats()
    rows = [
        ["bare client", f"{bare_start:.1f}", f"{bare_end:.1f}", f"{bare_end - bare_start:+.1f}"],
        ["instrumented", f"{start:.1f}", f"{end:.1f}", f"{end - start:+.1f}"],
    ]
    print_table(
        f"Resident memory over {args.calls:,} calls ({machine()}); target: within 50 MB",
        ["client", "RSS after warm-up MB", "RSS at end MB", "growth MB"],
        rows,
    )
    print(f"records written: {stats.written:,}, dropped: {stats.dropped}, failed: {stats.failed}")


if __name__ == "__main__":
    main()
