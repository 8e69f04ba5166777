"""DBConnect(resolver=cluster.master) on real replicated clusters: following failovers.

These are drills in miniature: real servers are stopped, frozen, promoted
and rejoined while requests go through ``db_session``. What is asserted is
behaviour (where writes land, which errors the app sees, that nothing hangs
past its deadline and nothing leaks), never speed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from compose.pg import ReplicatedCluster
from ctxdb import (
    ConnectionLostError,
    DBConnect,
    db_session,
    new_non_ctx_atomic_session,
    run_in_new_ctx,
)
from tests.support.replicated import resolver_and_master
from topology import ClusterResolver

pytestmark = pytest.mark.cluster

DEADLINE = 10.0  # per request; generous, it only has to be finite


def table_ddl(name: str) -> str:
    return f"create table if not exists {name} (id serial primary key, port int not null)"


async def write_once(master: DBConnect, table: str) -> int:
    """One request: insert a row, return the port of the server that took it."""

    async def request() -> int:
        session = await db_session(master)
        port = await session.execute(
            text(f"insert into {table}(port) values (inet_server_port()) returning port")
        )
        return int(port.scalar_one())

    return await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)


master_session = new_non_ctx_atomic_session


async def write_until_ok(master: DBConnect, table: str, timeout: float = DEADLINE) -> int:
    """Retry the way an app would on retryable errors, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await write_once(master, table)
        except ConnectionLostError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


@pytest.fixture
async def cluster_and_master(
    replicated: ReplicatedCluster,
) -> AsyncIterator[tuple[ClusterResolver, DBConnect]]:
    cluster, master = resolver_and_master(
        replicated.hosts,
        replicated.password,
        wait_timeout=DEADLINE,
        engine_kwargs={"pool_size": 20, "max_overflow": 20, "pool_timeout": DEADLINE},
    )
    async with cluster:
        try:
            yield cluster, master
        finally:
            await master.close()
    assert master.checked_out() == 0


async def test_writes_follow_a_promotion_after_the_primary_stops(
    replicated: ReplicatedCluster, cluster_and_master: tuple[ClusterResolver, DBConnect]
) -> None:
    cluster, master = cluster_and_master
    replicated.query(replicated.primary, table_ddl("follow_stop"))
    old, new = replicated.primary, replicated.replicas[0]
    assert await write_once(master, "follow_stop") == old.port

    await asyncio.to_thread(replicated.stop, old, "immediate")
    await asyncio.to_thread(replicated.promote, new)
    assert await write_until_ok(master, "follow_stop") == new.port
    assert await cluster.master() == new.host
    assert master.swaps == 1


async def test_stale_cache_write_on_a_demoted_node_is_refused_and_reported(
    replicated: ReplicatedCluster, replicated_hosts_slow: Any
) -> None:
    """The cache still names the old primary, now a replica: 25006, re-probe, success."""
    cluster, master = replicated_hosts_slow
    replicated.query(replicated.primary, table_ddl("stale_cache"))
    old, new = replicated.primary, replicated.replicas[0]
    replicated.wait_caught_up()
    async with cluster:
        assert await cluster.master() == old.host
        await asyncio.to_thread(replicated.stop, old, "fast")
        await asyncio.to_thread(replicated.promote, new)
        await asyncio.to_thread(replicated.rejoin, old)
        assert cluster.snapshot().primary == old.host  # stale on purpose (slow interval)

        with pytest.raises(ConnectionLostError) as refused:
            await write_once(master, "stale_cache")
        assert "read-only transaction" in str(refused.value.orig)
        assert cluster.stats().failure_reports >= 1
        assert await write_until_ok(master, "stale_cache") == new.port
    count_on_old = replicated.value(
        new, "select count(*) from stale_cache where port = %s", (old.port,)
    )
    assert count_on_old == 0  # no write was ever accepted by the demoted node
    await master.close()


@pytest.fixture
def replicated_hosts_slow(replicated: ReplicatedCluster) -> tuple[ClusterResolver, DBConnect]:
    # A cache that goes stale on purpose: nothing but a failure report refreshes it
    # (no promotion watch either: it would see the promotion by itself).
    return resolver_and_master(
        replicated.hosts,
        replicated.password,
        interval=60,
        stale_after=600,
        wait_timeout=DEADLINE,
        promotion_watch=0,
    )


async def test_frozen_primary_is_escaped_within_the_probe_timeout(
    replicated: ReplicatedCluster, cluster_and_master: tuple[ClusterResolver, DBConnect]
) -> None:
    """SIGSTOP: connections hang instead of failing. Requests stuck on the frozen
    primary are cut as soon as the probe gives up on it; new ones go to the new primary."""
    _cluster, master = cluster_and_master
    replicated.query(replicated.primary, table_ddl("follow_freeze"))
    old, new = replicated.primary, replicated.replicas[0]
    assert await write_once(master, "follow_freeze") == old.port

    async def stuck() -> None:
        async def request() -> None:
            session = await db_session(master)
            await session.execute(text("insert into follow_freeze(port) values (0)"))
            await asyncio.sleep(0.5)  # frozen meanwhile
            await session.execute(text("select 1"))

        await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)

    in_flight = asyncio.create_task(stuck())
    await asyncio.sleep(0.1)
    replicated.freeze(old)
    try:
        await asyncio.to_thread(replicated.promote, new)
        with pytest.raises(ConnectionLostError):
            await in_flight  # cut, not hung until DEADLINE
        assert await write_until_ok(master, "follow_freeze") == new.port
    finally:
        replicated.thaw(old)


async def test_500_requests_through_a_failover(
    replicated: ReplicatedCluster, cluster_and_master: tuple[ClusterResolver, DBConnect]
) -> None:
    _cluster, master = cluster_and_master
    replicated.query(replicated.primary, table_ddl("follow_load"))
    old, new = replicated.primary, replicated.replicas[0]
    await write_once(master, "follow_load")
    outcomes: list[str] = []

    async def one_request(i: int) -> None:
        await asyncio.sleep(0.002 * i)  # spread over ~1 s, across the failover
        started = time.monotonic()
        try:
            port = await write_until_ok(master, "follow_load", timeout=DEADLINE)
            outcomes.append("new" if port == new.port else "old")
        except ConnectionLostError:
            outcomes.append("lost")
        except TimeoutError:
            outcomes.append("deadline")
        except Exception as exc:  # recorded, so that no request outlives the test
            outcomes.append(f"{type(exc).__name__}: {exc}")
        assert time.monotonic() - started < 2 * DEADLINE + 1

    async def failover() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(replicated.stop, old, "immediate")
        await asyncio.to_thread(replicated.promote, new)

    results = await asyncio.gather(
        failover(), *(one_request(i) for i in range(500)), return_exceptions=True
    )
    assert [r for r in results if r is not None] == []
    assert len(outcomes) == 500
    assert "deadline" not in outcomes
    assert set(outcomes) <= {"old", "new"}
    assert master.swaps == 1
    assert master.checked_out() == 0


async def test_reads_through_cluster_replica_spread_and_survive_a_lost_replica(
    replicated: ReplicatedCluster, cluster_and_master: tuple[ClusterResolver, DBConnect]
) -> None:
    cluster, _ = cluster_and_master
    replica_connect = DBConnect(
        resolver=cluster.replica,
        url="postgresql+asyncpg://postgres:@/postgres",
        engine_kwargs={"connect_args": {"password": replicated.password, "timeout": 2}},
    )

    async def read_port() -> int:
        async def request() -> int:
            session = await db_session(replica_connect)
            return int((await session.execute(text("select inet_server_port()"))).scalar_one())

        return await asyncio.wait_for(run_in_new_ctx(request), DEADLINE)

    try:
        replicated.wait_streaming()
        deadline = time.monotonic() + DEADLINE
        while len(cluster.snapshot().replicas) < 2:  # both probed as replicas
            assert time.monotonic() < deadline, cluster.snapshot()
            await asyncio.sleep(0.05)
        replica_ports = {node.port for node in replicated.replicas}
        seen = {await read_port() for _ in range(6)}
        assert seen == replica_ports  # round robin over both replicas
        assert replica_connect.swaps == 0  # an engine per replica, no swapping

        lost, kept = replicated.replicas
        await asyncio.to_thread(replicated.stop, lost, "immediate")
        ports = []
        for _ in range(6):
            try:
                ports.append(await read_port())
            except ConnectionLostError:
                ports.append(-1)  # the report makes the next read avoid it
        assert ports[-3:] == [kept.port] * 3
    finally:
        await replica_connect.close()
    assert replica_connect.checked_out() == 0


@pytest.mark.parametrize("fault", ["switchover", "crash-leader-fast"])
async def test_patroni_failover_is_followed(patroni_cluster: Any, fault: str) -> None:
    cluster, master = resolver_and_master(
        patroni_cluster.hosts,
        patroni_cluster.password,
        user=patroni_cluster.superuser,
        wait_timeout=DEADLINE,
    )
    async with cluster:
        try:
            leader = patroni_cluster.leader()
            async with master_session(master) as session:
                await session.execute(text(table_ddl("patroni_follow")))
            assert await write_until_ok(master, "patroni_follow") == leader.port
            if fault == "switchover":
                new_leader = await asyncio.to_thread(patroni_cluster.switchover)
            else:
                _, new_leader = await asyncio.to_thread(patroni_cluster.crash_leader, fast=True)
            assert new_leader.port != leader.port
            assert await write_until_ok(master, "patroni_follow", timeout=30) == new_leader.port
        finally:
            await master.close()
    assert master.checked_out() == 0
