"""Read-your-writes on a real replicated cluster: replicas that replayed your commit.

Replay is paused on one replica (``pg_wal_replay_pause``) while the primary
writes, so that replica is really behind; what is asserted is where reads
land and what they see.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from read_your_writes_app import build, make_app
from sqlalchemy import text

from compose.pg import ReplicatedCluster
from ctxdb import (
    ASGIHTTPDBSessionMiddleware,
    DBConnect,
    Position,
    PositionToken,
    db_session,
    run_in_new_ctx,
)
from ctxdb.context import current_scope
from ctxdb.read_your_writes import format_lsn, parse_lsn
from topology import ClusterResolver, Timing

pytestmark = pytest.mark.cluster

MAX_WAIT = 0.05
SECRET = "test-secret-of-at-least-32-bytes-long"


@pytest.fixture
async def ryw(replicated: ReplicatedCluster) -> AsyncIterator[tuple[Any, DBConnect, DBConnect]]:
    replicated.query(
        replicated.primary, "create table if not exists ryw (id serial primary key, v text)"
    )
    replicated.wait_caught_up()
    cluster = ClusterResolver(
        replicated.hosts,
        user="postgres",
        password=replicated.password,
        database="postgres",
        timing=Timing(interval=0.2),
    )
    kwargs: dict[str, Any] = {
        "url": "postgresql+asyncpg://postgres@/postgres",
        "engine_kwargs": {"connect_args": {"password": replicated.password, "timeout": 2}},
    }
    master = DBConnect(resolver=cluster.master, read_your_writes=True, **kwargs)
    replica = DBConnect(resolver=cluster.replica, read_your_writes_wait=MAX_WAIT, **kwargs)
    async with cluster:
        await cluster.refresh()
        try:
            yield cluster, master, replica
        finally:
            await master.close()
            await replica.close()
            for node in replicated.replicas:
                replicated.resume_replay(node)


async def write_then_read(master: DBConnect, replica: DBConnect, value: str) -> tuple[int, bool]:
    """In one context: insert ``value`` on the primary, then read it through the replica."""

    async def request() -> tuple[int, bool]:
        session = await db_session(master)
        await session.execute(text("insert into ryw(v) values (:v)"), {"v": value})
        await session.commit()
        reader = await db_session(replica)
        port = (await reader.execute(text("select inet_server_port()"))).scalar_one()
        seen = await reader.execute(text("select count(*) from ryw where v = :v"), {"v": value})
        return int(port), seen.scalar_one() == 1

    return await run_in_new_ctx(request)


def test_lsn_text_round_trip() -> None:
    for text_form in ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"]:
        assert format_lsn(parse_lsn(text_form)) == text_form
    for bad in ["", "16", "x/y", "1/2/3", "123456789/0"]:
        with pytest.raises(ValueError, match="LSN"):
            parse_lsn(bad)


async def test_a_lagging_replica_is_skipped_and_used_again_after_resume(
    replicated: ReplicatedCluster, ryw: Any
) -> None:
    cluster, master, replica = ryw
    behind, _ = replicated.replicas
    replicated.pause_replay(behind)
    ports = [await write_then_read(master, replica, f"paused-{i}") for i in range(6)]
    assert all(seen for _, seen in ports)  # every read saw its own write
    assert behind.port not in {port for port, _ in ports}
    stats = cluster.read_your_writes_stats()
    assert stats.from_snapshot + stats.waited + stats.to_primary >= 6

    replicated.resume_replay(behind)
    replicated.wait_caught_up()
    ports = {(await write_then_read(master, replica, f"resumed-{i}"))[0] for i in range(12)}
    assert behind.port in ports  # caught up again: eligible again


async def test_both_replicas_paused_reads_go_to_the_primary(
    replicated: ReplicatedCluster, ryw: Any
) -> None:
    cluster, master, replica = ryw
    for node in replicated.replicas:
        replicated.pause_replay(node)
    before = cluster.read_your_writes_stats().to_primary
    started = time.monotonic()
    port, seen = await write_then_read(master, replica, "both-paused")
    elapsed = time.monotonic() - started
    assert (port, seen) == (replicated.primary.port, True)
    assert cluster.read_your_writes_stats().to_primary == before + 1
    assert elapsed < 5  # bounded by max_wait, never an unbounded wait


async def test_the_documented_wiring_builds(
    replicated: ReplicatedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_POSITION_SECRET", "a-secret-of-32-random-characters")
    example = build(replicated.hosts, replicated.password)
    assert example.master is not example.replica
    async with example.cluster:
        assert await example.cluster.master() == replicated.primary.host
    await example.master.close()
    await example.replica.close()


@pytest.mark.parametrize("secret", [None, "", "short", "31-characters-is-one-too-short!"])
def test_the_documented_wiring_refuses_a_missing_or_weak_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    if secret is None:
        monkeypatch.delenv("DB_POSITION_SECRET", raising=False)
    else:
        monkeypatch.setenv("DB_POSITION_SECRET", secret)
    with pytest.raises(RuntimeError, match="DB_POSITION_SECRET") as raised:
        build(["127.0.0.1:1"], "pw")
    assert "change-me" not in str(raised.value)


async def test_without_a_write_reads_behave_as_before(
    replicated: ReplicatedCluster, ryw: Any
) -> None:
    _, _, replica = ryw
    behind, _ = replicated.replicas
    replicated.pause_replay(behind)

    async def read() -> int:
        session = await db_session(replica)
        return int((await session.execute(text("select inet_server_port()"))).scalar_one())

    ports = {await run_in_new_ctx(read) for _ in range(6)}
    assert behind.port in ports  # no position recorded: any replica may serve


def app_for(master: DBConnect, replica: DBConnect) -> ASGIHTTPDBSessionMiddleware:
    return make_app(master, replica, SECRET)  # the documented example's app


async def test_position_travels_to_the_next_request(
    replicated: ReplicatedCluster, ryw: Any
) -> None:
    _, master, replica = ryw
    behind, _ = replicated.replicas
    replicated.pause_replay(behind)
    transport = httpx.ASGITransport(app=app_for(master, replica))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        written = await client.post("/")
        token = written.headers["x-db-position"]
        assert "db_position=" in written.headers["set-cookie"]
        assert PositionToken(SECRET).load(token) is not None
        client.cookies.clear()
        by_header = [int((await client.get("/", headers={"x-db-position": token})).text)]
        client.cookies.set("db_position", token)
        by_cookie = [int((await client.get("/")).text) for _ in range(4)]
    assert behind.port not in by_header + by_cookie


@pytest.mark.parametrize(
    "token",
    [
        "FFFFFFFF/FFFFFFFF.0000",  # forged: a far-future position, bad signature
        "not-a-token",
        "1/2.",
        "x" * 500,
        "ZZ/1." + "0" * 32,
    ],
)
async def test_forged_or_malformed_tokens_are_ignored(
    replicated: ReplicatedCluster, ryw: Any, token: str
) -> None:
    assert PositionToken(SECRET).load(token) is None
    _, master, replica = ryw
    transport = httpx.ASGITransport(app=app_for(master, replica))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/", headers={"x-db-position": token})
    assert response.status_code == 200
    assert "x-db-position" not in response.headers  # nothing recorded from it
    assert int(response.text) in {node.port for node in replicated.replicas}


def test_a_token_signed_with_another_secret_is_rejected() -> None:
    token = PositionToken("other-secret-of-at-least-32-bytes!").dump(parse_lsn("0/3000000"))
    assert PositionToken(SECRET).load(token) is None
    assert PositionToken(SECRET).load(PositionToken(SECRET).dump(123)) == 123
    with pytest.raises(ValueError, match="secret"):
        PositionToken("")


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
@pytest.mark.parametrize("pre_ping", [False, True], ids=["no-pre-ping", "pre-ping"])
async def test_a_full_pool_neither_stalls_nor_loses_positions(
    replicated: ReplicatedCluster, ryw: Any, driver: str, pre_ping: bool
) -> None:
    """30 requests write then read through pools of 3: the position needs no 4th connection."""
    cluster, _, _ = ryw
    timeout_key = "timeout" if driver == "asyncpg" else "connect_timeout"
    kwargs: dict[str, Any] = {
        "url": f"postgresql+{driver}://postgres@/postgres",
        "engine_kwargs": {
            "connect_args": {"password": replicated.password, timeout_key: 2},
            "pool_size": 3,
            "max_overflow": 0,
            "pool_timeout": 3,
            "pool_pre_ping": pre_ping,
        },
    }
    master = DBConnect(resolver=cluster.master, read_your_writes=True, **kwargs)
    replica = DBConnect(resolver=cluster.replica, read_your_writes_wait=1.0, **kwargs)

    async def request(value: str) -> tuple[int | None, bool]:
        session = await db_session(master)
        await session.execute(text("insert into ryw(v) values (:v)"), {"v": value})
        await session.commit()
        position = current_scope().commit_lsn
        seen = await (await db_session(replica)).execute(
            text("select count(*) from ryw where v = :v"), {"v": value}
        )
        return position, seen.scalar_one() == 1

    try:
        values = [f"{driver}-{pre_ping}-{n}-{time.monotonic_ns()}" for n in range(30)]
        results = await asyncio.gather(*(run_in_new_ctx(request, v) for v in values))
    finally:
        await master.close()
        await replica.close()
    assert all(position is not None for position, _ in results)  # no position lost
    assert all(seen for _, seen in results)  # every read saw its own write


async def test_a_position_of_another_cluster_is_ignored(
    replicated: ReplicatedCluster, ryw: Any
) -> None:
    """A far-future position sends reads to the primary, unless it is of another cluster."""
    cluster, master, replica = ryw
    ours = cluster.system_identifier
    assert ours is not None
    far_future = parse_lsn("FFFF/0")
    signer = PositionToken(SECRET)
    before = cluster.read_your_writes_stats()
    transport = httpx.ASGITransport(app=app_for(master, replica))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        foreign = signer.dump(Position(far_future, ours + 1))
        served_foreign = int((await client.get("/", headers={"x-db-position": foreign})).text)
        own = signer.dump(Position(far_future, ours))
        served_own = int((await client.get("/", headers={"x-db-position": own})).text)
    after = cluster.read_your_writes_stats()
    assert served_foreign in {node.port for node in replicated.replicas}
    assert served_own == replicated.primary.port
    assert after.other_cluster == before.other_cluster + 1
    assert after.to_primary == before.to_primary + 1
