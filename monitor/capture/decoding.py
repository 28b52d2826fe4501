"""Incremental decoding of compressed response bodies (gzip, deflate, br, zstd), in bounded pieces.

The transport sees the bytes as they come off the wire, before the HTTP client decodes them.
Each ``feed`` yields decoded pieces of at most ``piece_limit`` bytes, so a compression bomb never
makes the monitor hold more than one piece at a time.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final, Protocol

import brotli
import zstandard

DEFAULT_PIECE_LIMIT: Final = 256 * 1024
# zstd's decompressobj has no output limit; fed this many input bytes at a time its output
# stays within a few megabytes even at the format's maximum expansion ratio.
ZSTD_INPUT_SLICE: Final = 128


class DecodeError(Exception):
    """The body is not valid for its declared Content-Encoding."""


class Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]: ...

    def finish(self) -> Iterator[bytes]: ...


class IdentityDecoder:
    def feed(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def finish(self) -> Iterator[bytes]:
        return iter(())


#: Identity decoding holds no state: one decoder serves every response.
IDENTITY: Final = IdentityDecoder()


class ZlibDecoder:
    """gzip (``wbits=16+MAX_WBITS``) or deflate: zlib-wrapped, falling back to raw deflate."""

    def __init__(self, wbits: int, piece_limit: int) -> None:
        self._wbits = wbits
        self._piece_limit = piece_limit
        self._obj = zlib.decompressobj(wbits)
        self._first = True

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._first and data and self._wbits == zlib.MAX_WBITS:
            self._first = False
            if (data[0] & 0x0F) != 8:  # not a zlib header: servers often send raw deflate
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        pending = data
        while True:
            try:
                piece = self._obj.decompress(pending, self._piece_limit)
            except zlib.error as exc:
                raise DecodeError(str(exc)) from exc
            if piece:
                yield piece
            pending = self._obj.unconsumed_tail
            if not pending:
                return

    def finish(self) -> Iterator[bytes]:
        try:
            rest = self._obj.flush()
        except zlib.error as exc:
            raise DecodeError(str(exc)) from exc
        for start in range(0, len(rest), self._piece_limit):
            yield rest[start : start + self._piece_limit]


class BrotliDecoder:
    def __init__(self, piece_limit: int) -> None:
        self._obj = brotli.Decompressor()
        self._piece_limit = piece_limit

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            piece = self._obj.process(data, output_buffer_limit=self._piece_limit)
            while True:
                if piece:
                    yield piece
                if self._obj.can_accept_more_data() or self._obj.is_finished():
                    return
                piece = self._obj.process(b"", output_buffer_limit=self._piece_limit)
        except brotli.error as exc:
            raise DecodeError(str(exc)) from exc

    def finish(self) -> Iterator[bytes]:
        try:
            while not self._obj.is_finished():
                piece = self._obj.process(b"", output_buffer_limit=self._piece_limit)
                if not piece:
                    return
                yield piece
        except brotli.error as exc:
            raise DecodeError(str(exc)) from exc


class ZstdDecoder:
    def __init__(self) -> None:
        self._obj = zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> Iterator[bytes]:
        for start in range(0, len(data), ZSTD_INPUT_SLICE):
            try:
                piece = self._obj.decompress(data[start : start + ZSTD_INPUT_SLICE])
            except zstandard.ZstdError as exc:
                raise DecodeError(str(exc)) from exc
            if piece:
                yield piece

    def finish(self) -> Iterator[bytes]:
        return iter(())


class ChainDecoder:
    """Several encodings applied in order (``Content-Encoding: gzip, br`` means gzip first)."""

    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._run(0, data)

    def _run(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._decoders):
            if data:
                yield data
            return
        for piece in self._decoders[index].feed(data):
            yield from self._run(index + 1, piece)

    def finish(self) -> Iterator[bytes]:
        for index, decoder in enumerate(self._decoders):
            for piece in decoder.finish():
                yield from self._run(index + 1, piece)


#: The content codings :func:`decoder_for` undoes (``x-gzip`` is gzip's old name).
DECODABLE: Final = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})


def content_codings(content_encoding: str | None) -> list[str]:
    """The codings a ``Content-Encoding`` value lists, lower-case, in the order they were
    applied, ``identity`` left out."""
    names = [n.strip().lower() for n in (content_encoding or "").split(",") if n.strip()]
    return [n for n in names if n != "identity"]


def decoder_for(content_encoding: str | None, piece_limit: int = DEFAULT_PIECE_LIMIT) -> Decoder:
    """A decoder for a ``Content-Encoding`` header value; unknown encodings raise DecodeError."""
    if not content_encoding:  # the usual response: nothing to undo
        return IDENTITY
    decoders: list[Decoder] = []
    for name in reversed(content_codings(content_encoding)):  # the last applied is undone first
        if name in ("gzip", "x-gzip"):
            decoders.append(ZlibDecoder(16 + zlib.MAX_WBITS, piece_limit))
        elif name == "deflate":
            decoders.append(ZlibDecoder(zlib.MAX_WBITS, piece_limit))
        elif name == "br":
            decoders.append(BrotliDecoder(piece_limit))
        elif name == "zstd":
            decoders.append(ZstdDecoder())
        else:
            raise DecodeError(f"unsupported content-encoding {name!r}")
    if not decoders:
        return IDENTITY
    if len(decoders) == 1:
        return decoders[0]
    return ChainDecoder(decoders)
