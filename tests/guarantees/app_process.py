"""A stand-in application process for the exit, crash, fork and many-writer tests.

Run as ``python app_process.py MODE [ARGS...]``; configuration comes from ``MONITOR_*``
environment variables, as in a real deployment. Prints one JSON line of figures at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime

import httpx

import monitor
from monitor.recording.recorder import get_recorder
from monitor.records import CallRecord

BODY = {"model": "LongCat-Flash-Chat", "messages": [{"role": "user", "content": "hi"}]}


def record(n: int) -> CallRecord:
    return CallRecord(
        started_at=datetime.now(UTC),
        api="openai",
        endpoint="/openai/v1/chat/completions",
        key_id="k_" + "1" * 24,
        key_hint="0001",
        model="LongCat-Flash-Chat",
        status_code=200,
        input_tokens=n % 100,
        output_tokens=5,
        total_tokens=n % 100 + 5,
        usage_source="reported",
        labels={"pid": str(os.getpid())},
    )


def calls(client: httpx.Client, count: int) -> None:
    for _ in range(count):
        client.post(
            "/openai/v1/chat/completions",
            json=BODY,
            headers={"authorization": "Bearer sk-app-process-key-000000000001"},
        ).raise_for_status()


def report(**figures: object) -> None:
    print(json.dumps(figures), flush=True)


def main(mode: str, args: list[str]) -> None:
    recorder = get_recorder()
    if mode == "submit-and-exit":  # N records queued, then a normal exit
        for n in range(int(args[0])):
            recorder.submit(record(n))
        report(submitted=int(args[0]), exit_started=time.time())
    elif mode == "spool-then-kill":  # the database is down: spool N records, then SIGKILL
        for n in range(int(args[0])):
            recorder.submit(record(n))
        assert recorder.flush(timeout=30)
        report(**{k: v for k, v in vars_of(recorder).items()})
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "write-then-kill":  # N written, M more submitted, SIGKILL at once
        for n in range(int(args[0])):
            recorder.submit(record(n))
        assert recorder.flush(timeout=30)
        for n in range(int(args[1])):
            recorder.submit(record(n))
        report(written=recorder.stats().written)
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "restart":  # start, instrument, wait for the left spool to be replayed
        monitor.instrument(httpx.Client())
        deadline = time.monotonic() + 30
        while recorder.stats().replayed < int(args[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        report(**vars_of(recorder))
    elif mode == "many":  # N records straight to the recorder plus M real calls
        base_url, count, real = args[0], int(args[1]), int(args[2])
        start_at = float(args[3])
        with monitor.instrument(httpx.Client(base_url=base_url)) as client:
            time.sleep(max(0.0, start_at - time.time()))
            started = time.perf_counter()
            for n in range(count):
                recorder.submit(record(n))
                if n % 1000 == 999:
                    time.sleep(0.001)  # an app does other things between calls
            calls(client, real)
            ok = monitor.flush(timeout=120)
            report(ok=ok, seconds=time.perf_counter() - started, **vars_of(recorder))
    elif mode == "fork":  # gunicorn style: instrument, call, fork workers that call
        base_url, workers, per_worker = args[0], int(args[1]), int(args[2])
        # Made at import time and shared by the workers, as a preloaded app does. (It has no
        # open connection at the fork: a pooled socket cannot be shared by processes.)
        client = monitor.instrument(httpx.Client(base_url=base_url))
        parent_client = monitor.instrument(httpx.Client(base_url=base_url))
        calls(parent_client, 10)  # the parent's writer is running and has records queued
        children = []
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                calls(client, per_worker)
                sys.exit(0)  # a worker's normal exit: atexit writes what it queued
            children.append(pid)
        calls(parent_client, 10)
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
        ok = monitor.flush(timeout=30)
        report(ok=ok, statuses=statuses, **vars_of(recorder))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def vars_of(recorder: object) -> dict[str, int]:
    stats = recorder.stats()  # type: ignore[attr-defined]
    return {name: getattr(stats, name) for name in stats.__dataclass_fields__}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
