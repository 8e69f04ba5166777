"""The fault proxy itself, on a real PostgreSQL: each fault does what it says.

Clients here are plain psycopg connections (no ctxdb, no topology), so a
failure points at the proxy, not at the code under test.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from compose.pg import ReplicatedCluster
from tests.support import faultproxy as fp
from tests.support.faultproxy import FaultProxy

pytestmark = [pytest.mark.chaos, pytest.mark.cluster]


def conninfo(cluster: ReplicatedCluster, port: int, timeout: int = 2) -> dict[str, Any]:
    return {
        "host": "127.0.0.1", "port": port, "user": "postgres", "password": cluster.password,
        "dbname": "postgres", "connect_timeout": timeout, "autocommit": True,
    }  # fmt: skip


@pytest.fixture
def proxy(replicated: ReplicatedCluster) -> Any:
    with FaultProxy(replicated.primary.port, name="primary") as proxy:
        yield proxy


def server_port(cluster: ReplicatedCluster, proxy: FaultProxy) -> int:
    with psycopg.connect(**conninfo(cluster, proxy.port)) as conn:
        row = conn.execute("select inet_server_port()").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize(
    "fault",
    [fp.PASS, fp.latency(0.01), fp.bandwidth(20_000), fp.drip(0.0005)],
    ids=["pass", "latency", "bandwidth", "drip"],
)
def test_slow_faults_deliver_every_byte_in_order(
    replicated: ReplicatedCluster, proxy: FaultProxy, fault: fp.Fault
) -> None:
    """Invariant: slowed, not corrupted: a 400-byte answer arrives intact from the real server."""
    proxy.set(fault)
    with psycopg.connect(**conninfo(replicated, proxy.port, timeout=10)) as conn:
        row = conn.execute("select inet_server_port(), repeat('ab', 200)").fetchone()
    assert row == (replicated.primary.port, "ab" * 200)


def test_black_hole_accepts_and_never_answers(
    replicated: ReplicatedCluster, proxy: FaultProxy
) -> None:
    """Invariant: a black-holed connect is accepted and times out; PASS heals new ones."""
    proxy.set(fp.black_hole())
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**conninfo(replicated, proxy.port, timeout=1))
    assert proxy.accepted == 1
    proxy.set(fp.PASS)
    assert server_port(replicated, proxy) == replicated.primary.port


def test_refuse_closes_the_port_and_pass_reopens_it(
    replicated: ReplicatedCluster, proxy: FaultProxy
) -> None:
    """Invariant: refused at once (no accept), open connections untouched, same port after."""
    port = proxy.port
    with psycopg.connect(**conninfo(replicated, proxy.port)) as conn:
        proxy.set(fp.refuse())
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(**conninfo(replicated, port))
        assert conn.execute("select 1").fetchone() == (1,)
    proxy.set(fp.PASS)
    assert proxy.port == port
    assert server_port(replicated, proxy) == replicated.primary.port


def test_reset_now_breaks_open_connections(
    replicated: ReplicatedCluster, proxy: FaultProxy
) -> None:
    """Invariant: every open connection fails on its next use; new ones work."""
    with psycopg.connect(**conninfo(replicated, proxy.port)) as conn:
        assert proxy.reset_now() == 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
    assert server_port(replicated, proxy) == replicated.primary.port


def test_reset_after_the_commit_is_sent_leaves_it_committed(
    replicated: ReplicatedCluster, proxy: FaultProxy
) -> None:
    """Invariant: reset_after(0, "s2c") armed before COMMIT: the client gets an
    error, and the row is stored."""
    table = f"proxy_{uuid.uuid4().hex[:10]}"
    replicated.query(replicated.primary, f"create table {table} (x int)")
    info = conninfo(replicated, proxy.port) | {"autocommit": False}
    with psycopg.connect(**info) as conn:
        conn.execute(f"insert into {table} values (1)")
        proxy.set(fp.reset_after(0, "s2c"))
        with pytest.raises(psycopg.OperationalError):
            conn.commit()
    proxy.set(fp.PASS)
    with psycopg.connect(**conninfo(replicated, replicated.primary.port)) as direct:
        assert direct.execute(f"select count(*) from {table}").fetchone() == (1,)


def test_reset_after_n_client_bytes_forwards_exactly_those(
    replicated: ReplicatedCluster, proxy: FaultProxy
) -> None:
    """Invariant: c2s budget of one simple Query: the server runs it, the client hears nothing."""
    table = f"proxy_{uuid.uuid4().hex[:10]}"
    replicated.query(replicated.primary, f"create table {table} (x int)")
    query = f"insert into {table} values (7)".encode()
    with psycopg.connect(**conninfo(replicated, proxy.port)) as conn:
        # A simple Query message: 'Q', int32 length, the text, NUL.
        proxy.set(fp.reset_after(1 + 4 + len(query) + 1, "c2s"))
        with pytest.raises(psycopg.OperationalError):
            conn.execute(query.decode(), prepare=False)
            conn.execute("select 1")  # the second query is never forwarded
    proxy.set(fp.PASS)
    with psycopg.connect(**conninfo(replicated, replicated.primary.port)) as direct:
        assert direct.execute(f"select count(*) from {table}").fetchone() == (1,)


async def test_half_open_holds_answers_back_and_loses_none(
    replicated: ReplicatedCluster, proxy: FaultProxy
) -> None:
    """Invariant: s2c half-open: the server runs the query, the answer waits in the
    proxy's unread buffers (no answer within 1 s) and arrives once reading resumes."""
    async with await psycopg.AsyncConnection.connect(**conninfo(replicated, proxy.port)) as conn:
        proxy.set(fp.half_open("s2c"))
        pending = asyncio.ensure_future(conn.execute("select inet_server_port()"))
        done, _ = await asyncio.wait([pending], timeout=1.0)
        assert not done, "an answer crossed a half-open proxy"
        proxy.set(fp.PASS)
        cursor = await asyncio.wait_for(pending, 10)
        assert await cursor.fetchone() == (replicated.primary.port,)


def test_stop_closes_everything_it_started(replicated: ReplicatedCluster) -> None:
    """Invariant: after stop(), the thread is gone, the port refuses, open connections broke."""
    proxy = FaultProxy(replicated.primary.port).start()
    conn = psycopg.connect(**conninfo(replicated, proxy.port))
    thread = proxy._thread
    proxy.stop()
    proxy.stop()  # idempotent
    assert thread is not None
    assert not thread.is_alive()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("select 1")
    conn.close()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(**conninfo(replicated, proxy.port))
