"""The gateway's writer: a head goes out with its first body piece, and nothing is held past the
turn of the event loop it was written in."""

from __future__ import annotations

import asyncio

from monitor.gateway.protocol import CoalescingWriter


class RecordingTransport:
    """Keeps each system-call-sized write as one entry."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, pieces: list[bytes]) -> None:
        self.writes.append(b"".join(pieces))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


def run(steps: object) -> None:
    asyncio.run(steps)  # type: ignore[arg-type]


def test_a_head_goes_out_with_the_first_body_piece_at_once() -> None:
    async def steps() -> None:
        transport = RecordingTransport()
        writer = CoalescingWriter(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert transport.writes == []
        writer.write(b"body")
        assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]

    run(steps())


def test_a_head_whose_body_is_not_in_hand_goes_out_when_the_loop_turns() -> None:
    async def steps() -> None:
        transport = RecordingTransport()
        writer = CoalescingWriter(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        writer.write(b"head")
        await asyncio.sleep(0)
        assert transport.writes == [b"head"]
        writer.write(b"event 1")
        await asyncio.sleep(0)
        writer.write(b"event 2")
        await asyncio.sleep(0)
        assert transport.writes == [b"head", b"event 1", b"event 2"]  # one by one, not held

    run(steps())


def test_pieces_written_in_one_turn_go_together_in_order_and_the_end_goes_at_once() -> None:
    async def steps() -> None:
        transport = RecordingTransport()
        writer = CoalescingWriter(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        writer.write(b"head")
        writer.write(b"a")
        writer.write(b"b")
        writer.write(b"c")
        assert transport.writes == [b"heada"]
        writer.end_response()
        assert transport.writes == [b"heada", b"bc"]
        writer.write(b"next head")  # the next response's head is held again
        writer.write(b"next body")
        assert transport.writes == [b"heada", b"bc", b"next headnext body"]

    run(steps())


def test_closing_writes_what_is_held_first_and_nothing_goes_to_a_closed_connection() -> None:
    async def steps() -> None:
        transport = RecordingTransport()
        writer = CoalescingWriter(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        writer.write(b"head")
        writer.close()
        assert (transport.writes, transport.closed) == ([b"head"], True)
        writer.write(b"late")
        await asyncio.sleep(0)
        assert transport.writes == [b"head"]
        assert writer.get_extra_info("peername") == "extra peername"

    run(steps())
