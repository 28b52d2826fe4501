"""The gateways' load generator, a worker in its own process (``python -m bench.peers.load``).

Its event loop lives as long as the process and keeps one aiohttp session per target, so
connections stay open between runs, as a client's would.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import aiohttp

# One key for every path: the simulator takes any, LiteLLM's proxy wants it as its master key
# and refuses to start on a short one.
KEY = "sk-" + hashlib.sha256(b"longcat-monitor bench peers").hexdigest()
HEADERS = {"authorization": f"Bearer {KEY}"}


class Load:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sessions: dict[str, aiohttp.ClientSession] = {}

    def session(self, url: str) -> aiohttp.ClientSession:
        origin = url.split("/", 3)[2]
        if origin not in self.sessions:
            connector = aiohttp.TCPConnector(limit=0, loop=self.loop)
            timeout = aiohttp.ClientTimeout(total=120)
            self.sessions[origin] = aiohttp.ClientSession(
                connector=connector, timeout=timeout, loop=self.loop
            )
        return self.sessions[origin]

    async def _one(self, url: str, body: dict[str, Any]) -> float:
        """Milliseconds to the whole answer, or to the first byte of a stream."""
        start = time.perf_counter()
        async with self.session(url).post(url, json=body, headers=HEADERS) as response:
            if response.status != 200:
                raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
            if not body.get("stream"):
                await response.read()
                return (time.perf_counter() - start) * 1000
            first = 0.0
            async for chunk in response.content.iter_any():
                if chunk and not first:
                    first = (time.perf_counter() - start) * 1000
            return first

    def run(self, url: str, body: dict[str, Any], concurrency: int, calls: int) -> dict[str, Any]:
        """``concurrency`` clients calling back to back until ``calls`` calls are done."""
        latencies: list[float] = []
        remaining = [calls]

        async def client() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                latencies.append(await self._one(url, body))

        async def all_clients() -> float:
            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            return time.perf_counter() - start

        wall = self.loop.run_until_complete(all_clients())
        return {"latencies_ms": latencies, "wall_s": wall}

    def streams(self, url: str, body: dict[str, Any], concurrency: int) -> list[dict[str, float]]:
        """``concurrency`` streams started together; per stream: first byte, the longest gap
        between two reads, the whole duration (ms), and the SSE events read."""

        async def one() -> dict[str, float]:
            start = time.perf_counter()
            first = last = 0.0
            gap = 0.0
            events = 0
            async with self.session(url).post(url, json=body, headers=HEADERS) as response:
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}")
                async for chunk in response.content.iter_any():
                    now = time.perf_counter()
                    if not first:
                        first = now
                    elif now - last > gap:
                        gap = now - last
                    last = now
                    events += chunk.count(b"\n\n")
            return {
                "first_ms": (first - start) * 1000,
                "max_gap_ms": gap * 1000,
                "total_ms": (last - start) * 1000,
                "events": events,
            }

        async def all_streams() -> list[dict[str, float]]:
            return list(await asyncio.gather(*(one() for _ in range(concurrency))))

        return self.loop.run_until_complete(all_streams())


if __name__ == "__main__":
    from bench.peers.worker import serve

    load = Load()
    serve({"run": load.run, "streams": load.streams})
    for session in load.sessions.values():
        load.loop.run_until_complete(session.close())
