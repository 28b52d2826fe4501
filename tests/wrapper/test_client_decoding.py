"""Which bodies the caller's client decodes itself, so which the wrapper may decode in its place."""

from __future__ import annotations

import types

import httpx
import httpx2
import pytest

from monitor.capture.client_decoding import (
    EVERY_CODING,
    ClientDecoding,
    accepted_codings,
    invites_undecoded,
    module_decoding,
    request_decoding,
)

GZIP_BR = ClientDecoding(frozenset({"gzip", "deflate", "br"}))


@pytest.mark.parametrize(
    ("content_encoding", "decodes"),
    [
        (None, True),
        ("", True),
        ("identity", True),
        ("GZIP", True),
        ("gzip, br", True),
        ("zstd", False),
        ("gzip, zstd", False),  # the client would gunzip the zstd bytes (and fail)
        ("compress", False),
        ("x-gzip", False),  # the monitor knows the old name; this client does not
    ],
)
def test_a_client_decodes_a_body_only_in_codings_it_knows(
    content_encoding: str | None, decodes: bool
) -> None:
    assert GZIP_BR.decodes(content_encoding) is decodes


def test_a_body_the_monitor_cannot_decode_is_not_decoded_for_any_client() -> None:
    assert not ClientDecoding(frozenset({"compress"})).decodes("compress")
    assert not EVERY_CODING.decodes("compress")


def test_a_chain_longer_than_the_client_applies_is_left_to_the_client() -> None:
    limited = ClientDecoding(frozenset({"gzip"}), max_codings=2)
    assert limited.decodes("gzip, gzip")
    assert not limited.decodes("gzip, gzip, gzip")  # the client raises on it: so must the caller


@pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_each_module_decodes_what_its_clients_ask_for(http: types.ModuleType) -> None:
    decoding = module_decoding(http)
    with http.Client() as client:
        asked = client.headers["accept-encoding"]
    assert decoding.codings == accepted_codings(asked)
    assert not invites_undecoded(decoding, asked)  # a client's own request: usage is asked


@pytest.mark.parametrize(
    ("accept_encoding", "invites"),
    [
        (None, False),
        ("identity", False),
        ("gzip, deflate, br", False),
        ("gzip, zstd;q=0", False),  # refused
        ("gzip, zstd", True),
        ("zstd;q=0.5", True),
        ("*", True),  # the server may choose any coding, one the monitor cannot decode too
        ("*;q=0, gzip", False),
    ],
)
def test_a_request_invites_a_body_its_client_would_not_decode(
    accept_encoding: str | None, invites: bool
) -> None:
    assert invites_undecoded(GZIP_BR, accept_encoding) is invites


def test_a_client_known_by_its_request_decodes_what_it_accepts() -> None:
    assert request_decoding("gzip, zstd").decodes("zstd")
    assert not request_decoding("gzip, br").decodes("zstd")
    assert not request_decoding(None).decodes("gzip")  # asked for nothing: gets it as it came
    assert request_decoding("*") is EVERY_CODING
