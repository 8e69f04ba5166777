"""The wire-protocol column rewriter: framing on bytes, then on a real server through the proxy."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psycopg
import pytest

from compose.pg import ReplicatedCluster
from tests.support.faultproxy import FaultProxy
from tests.support.pgwire import ColumnRewriter, rewrite_data_row

MARK = "chaos_marker"


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def data_row(*values: bytes | None) -> bytes:
    fields = b"".join(struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
                      for v in values)  # fmt: skip
    return message(b"D", struct.pack("!h", len(values)) + fields)


def startup() -> bytes:
    ssl = struct.pack("!ii", 8, 80877103)
    body = struct.pack("!i", 196608) + b"user\0u\0\0"
    return ssl + struct.pack("!i", len(body) + 4) + body


def test_rewrite_data_row_replaces_one_column_and_keeps_the_others() -> None:
    body = data_row(b"t", None, b"123")[5:]
    assert rewrite_data_row(body, 0, b"maybe") == data_row(b"maybe", None, b"123")[5:]
    assert rewrite_data_row(body, 2, None) == data_row(b"t", None, None)[5:]
    with pytest.raises(ValueError, match="no column 3"):
        rewrite_data_row(body, 3, b"x")


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000])
def test_framing_holds_however_the_bytes_are_split(piece: int) -> None:
    """Invariant: the same output whether bytes come whole or in pieces of any size."""
    client = startup() + message(b"Q", f"select {MARK}\0".encode())
    server = b"N" + message(b"R", b"\0\0\0\0") + data_row(b"f", b"1") + message(b"Z", b"I")
    rewriter = ColumnRewriter(lambda q: MARK in q, 0, b"maybe")
    for start in range(0, len(client), piece):
        rewriter.client_bytes(client[start : start + piece])
    out = b"".join(
        rewriter.server_bytes(server[i : i + piece]) for i in range(0, len(server), piece)
    )
    assert rewriter.matched is True
    assert out == b"N" + message(b"R", b"\0\0\0\0") + data_row(b"maybe", b"1") + message(b"Z", b"I")


def test_a_connection_whose_first_query_does_not_match_passes_untouched() -> None:
    rewriter = ColumnRewriter(lambda q: MARK in q, 0, b"maybe")
    rewriter.client_bytes(startup() + message(b"Q", b"select 1\0"))
    rewriter.client_bytes(message(b"Q", f"select {MARK}\0".encode()))
    server = b"N" + data_row(b"f")
    assert rewriter.server_bytes(server) == server
    assert rewriter.matched is False


def test_an_encrypted_connection_is_left_alone() -> None:
    rewriter = ColumnRewriter(lambda q: True, 0, b"maybe")
    rewriter.client_bytes(struct.pack("!ii", 8, 80877103))
    assert rewriter.server_bytes(b"S\x16\x03\x01garbage") == b"S\x16\x03\x01garbage"
    assert rewriter.off


Connect = Callable[[ReplicatedCluster, int], Any]


async def fetch_psycopg(cluster: ReplicatedCluster, port: int, query: str) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(
        host="127.0.0.1", port=port, user="postgres", password=cluster.password,
        dbname="postgres", connect_timeout=5, autocommit=True,
    ) as conn:  # fmt: skip
        cursor = await conn.execute(query)
        row = await cursor.fetchone()
        assert row is not None
        return tuple(row)


async def fetch_asyncpg(cluster: ReplicatedCluster, port: int, query: str) -> tuple[Any, ...]:
    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, user="postgres", password=cluster.password,
        database="postgres", timeout=5,
    )  # fmt: skip
    try:
        return tuple(await conn.fetchrow(query))
    finally:
        await conn.close()


@pytest.mark.chaos
@pytest.mark.cluster
@pytest.mark.parametrize("fetch", [fetch_psycopg, fetch_asyncpg], ids=["psycopg", "asyncpg"])
async def test_a_real_server_answer_is_rewritten_through_the_proxy(
    replicated: ReplicatedCluster, fetch: Any
) -> None:
    """Invariant: only the named column of the matching connection changes; others pass."""
    made: list[ColumnRewriter] = []

    def rewriter() -> ColumnRewriter:
        made.append(ColumnRewriter(lambda q: MARK in q, 1, b"maybe"))
        return made[-1]

    query = f"select '{MARK}'::text, 'real'::text, inet_server_port()"
    with FaultProxy(replicated.primary.port, rewriter=rewriter) as proxy:
        assert await fetch(replicated, proxy.port, query) == (
            MARK,
            "maybe",
            replicated.primary.port,
        )
        assert await fetch(replicated, proxy.port, "select 'real'::text") == ("real",)
    assert [r.matched for r in made] == [True, False]
    assert made[0].rewritten == 1
