"""A tiny HTTP forward proxy on 127.0.0.1 (CONNECT tunnels and absolute-form requests), asyncio on
a background thread; it keeps the request line of every connection it served."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Self

from monitor.serving import LOCALHOST


class ForwardProxy:
    """``seen`` holds one line per proxied connection: ``CONNECT host:port`` or
    ``POST http://host:port/path``. Plain requests are sent on with ``Connection: close``, so each
    one is a connection of its own and its line is kept."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="forward-proxy")
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, LOCALHOST, 0), self._loop
        )
        self._server = started.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0.01)  # the closed sockets are released on the next turns

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        upstream_out: asyncio.StreamWriter | None = None
        try:
            head = await client_in.readuntil(b"\r\n\r\n")
            request_line, _, rest = head.partition(b"\r\n")
            method, target, version = request_line.decode("latin-1").split(" ")
            self.seen.append(f"{method} {target}")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream_in, upstream_out = await asyncio.open_connection(host, int(port))
                client_out.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                # absolute-form: http://host:port/path?query
                authority, _, path = target.removeprefix("http://").partition("/")
                host, _, port = authority.rpartition(":")
                upstream_in, upstream_out = await asyncio.open_connection(host, int(port or 80))
                kept = [
                    line
                    for line in rest.split(b"\r\n")
                    if line and not line.lower().startswith((b"connection:", b"proxy-"))
                ]
                upstream_out.write(
                    f"{method} /{path} {version}\r\n".encode("latin-1")
                    + b"".join(line + b"\r\n" for line in kept)
                    + b"Connection: close\r\n\r\n"
                )
            await asyncio.gather(_pipe(client_in, upstream_out), _pipe(upstream_in, client_out))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            client_out.close()
            if upstream_out is not None:
                upstream_out.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            if sink.can_write_eof():
                sink.write_eof()
