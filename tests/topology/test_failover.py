"""ClusterResolver on a real primary + 2 streaming replicas: roles, failovers, lag.

The resolvers here run with a long ``interval`` where the point is to show
that a failure report (not the regular loop) makes them follow the primary.
Cluster operations block, so they run in a thread while the loop keeps going.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from compose.pg import ReplicatedCluster
from tests.support.settings import resolver_kwargs
from tests.support.waiting import eventually
from topology import ClusterResolver, NoPrimaryError, ProbeError, Reason, Role

pytestmark = pytest.mark.cluster

MakeCluster = Callable[..., ClusterResolver]


def primary_timeline(cluster: ReplicatedCluster) -> int:
    walfile = cluster.value(cluster.primary, "SELECT pg_walfile_name(pg_current_wal_lsn())")
    return int(walfile[:8], 16)


@pytest.fixture(params=["asyncpg", "psycopg"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_cluster(replicated: ReplicatedCluster, driver: str) -> AsyncIterator[MakeCluster]:
    made: list[ClusterResolver] = []

    def make(**kwargs: object) -> ClusterResolver:
        settings: dict[str, object] = {
            "user": "postgres",
            "password": replicated.password,
            "database": "postgres",
            "driver": driver,
            "application_name": f"topo-{uuid.uuid4().hex[:10]}",
            "interval": 60.0,
            "probe_timeout": 0.5,
            "wait_timeout": 10.0,
        }
        settings.update(kwargs)
        cluster = ClusterResolver(replicated.hosts, **resolver_kwargs(**settings))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


def probe_connections(replicated: ReplicatedCluster, application_name: str) -> int:
    total = 0
    for node in replicated.nodes:
        if node.running:
            total += int(
                replicated.value(
                    node,
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (application_name,),
                )
            )
    return total


async def test_roles_lag_and_timelines_detected_and_close_leaves_nothing(
    replicated: ReplicatedCluster, make_cluster: MakeCluster
) -> None:
    name = f"topo-roles-{uuid.uuid4().hex[:8]}"
    cluster = make_cluster(application_name=name)
    replica_hosts = {node.host for node in replicated.replicas}
    async with cluster:
        await asyncio.to_thread(replicated.wait_caught_up)
        snapshot = await cluster.refresh()
        assert snapshot.primary == replicated.primary.host
        assert set(snapshot.replicas) == replica_hosts
        timeline = await asyncio.to_thread(primary_timeline, replicated)
        assert {state.timeline for state in snapshot.hosts} == {timeline}
        for host in replica_hosts:
            assert snapshot[host].lag_bytes is not None
            assert snapshot[host].lag_seconds is not None
            assert snapshot[host].latency is not None
        assert await cluster.master() == replicated.primary.host
        assert {await cluster.replica() for _ in range(4)} == replica_hosts  # round robin
        assert await asyncio.to_thread(probe_connections, replicated, name) == 3
    assert not cluster.running
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()
    await eventually(lambda: probe_connections(replicated, name) == 0)


async def test_stopped_primary_and_promotion_followed_after_a_failure_report(
    replicated: ReplicatedCluster, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster()
    old = replicated.primary
    new = replicated.replicas[0]
    old_timeline = await asyncio.to_thread(primary_timeline, replicated)
    masters: list[str | None] = []
    async with cluster:
        assert await cluster.master() == old.host
        cluster.master.add_listener(masters.append)
        await asyncio.to_thread(replicated.stop, old, "immediate")
        cluster.master.report_failure(old.host, ConnectionResetError("server closed"))
        await asyncio.to_thread(replicated.promote, new)
        writable_at = time.monotonic()
        assert await cluster.master() == new.host
        # Bounded by the fast interval, far below the 60 s regular interval.
        assert time.monotonic() - writable_at < 2.0
        assert masters[-1] == new.host
        assert None in masters  # the stopped primary was dropped before the promotion
        # Writes go through the host the resolver returned.
        host, port = new.host.rsplit(":", 1)
        assert (host, int(port)) == ("127.0.0.1", new.port)
        table = f"topo_failover_{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(replicated.query, new, f"CREATE TABLE {table} (x int)")

        snapshot = cluster.snapshot()
        assert snapshot[old.host].role is Role.DOWN
        error = snapshot[old.host].error
        assert error is not None
        assert error.reason is Reason.CONNECTION_REFUSED
        assert snapshot[new.host].timeline == old_timeline + 1
        # The old primary comes back as a replica of the new one: never the primary.
        await asyncio.to_thread(replicated.rejoin, old)
        snapshot = await cluster.refresh()
        assert snapshot[old.host].role is Role.REPLICA
        assert snapshot.primary == new.host
        assert await cluster.master() == new.host
        assert cluster.stats().role_changes >= 2


async def test_frozen_primary_followed_within_about_one_probe_timeout(
    replicated: ReplicatedCluster, make_cluster: MakeCluster
) -> None:
    probe_timeout = 0.5
    cluster = make_cluster(probe_timeout=probe_timeout)
    old = replicated.primary
    new = replicated.replicas[0]
    async with cluster:
        assert await cluster.master() == old.host  # a probe connection to it is open
        await asyncio.to_thread(replicated.freeze, old)
        cluster.master.report_failure(old.host, TimeoutError())
        await asyncio.to_thread(replicated.promote, new)
        writable_at = time.monotonic()
        assert await cluster.master() == new.host
        # The frozen host's probe hangs until its timeout; the new primary is
        # published as soon as it answers (a bounded check, not a benchmark).
        assert time.monotonic() - writable_at < probe_timeout + 1.0
        snapshot = await cluster.refresh()
        assert snapshot.primary == new.host
        assert snapshot[old.host].role is Role.DOWN
        error = snapshot[old.host].error
        assert error is not None
        assert error.reason is Reason.TIMED_OUT
        started = time.monotonic()
        await cluster.close(timeout=1.0)
        assert time.monotonic() - started < 2.0
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


async def test_split_brain_higher_timeline_wins_and_lower_never_returns(
    replicated: ReplicatedCluster,
    make_cluster: MakeCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="topology")
    cluster = make_cluster(interval=0.05, wait_timeout=1.0)
    old = replicated.primary
    new = replicated.replicas[0]
    async with cluster:
        assert await cluster.master() == old.host
        # Promote without stopping the old primary: two hosts accept writes.
        await asyncio.to_thread(replicated.promote, new, repoint=False)
        await eventually(lambda: cluster.snapshot().primary == new.host)
        snapshot = cluster.snapshot()
        assert snapshot[old.host].role is Role.STALE_PRIMARY
        assert snapshot[new.host].timeline == snapshot.max_timeline
        assert snapshot[old.host].timeline == snapshot.max_timeline - 1
        assert {await cluster.master() for _ in range(50)} == {new.host}
        assert "split brain" in caplog.text
        assert replicated.password not in caplog.text
        # The winner dies: the loser (lower timeline) is still never the primary.
        await asyncio.to_thread(replicated.stop, new, "immediate")
        cluster.master.report_failure(new.host, ConnectionResetError())
        with pytest.raises(NoPrimaryError) as info:
            await cluster.master()
        assert "stale primary on timeline" in str(info.value.causes[old.host])
        cause = info.value.causes[new.host]
        assert isinstance(cause, ProbeError)
        assert cause.reason is Reason.CONNECTION_REFUSED


async def test_paused_replay_excludes_the_replica_past_the_lag_bound_until_resumed(
    replicated: ReplicatedCluster, make_cluster: MakeCluster
) -> None:
    bound = 64 * 1024
    cluster = make_cluster(interval=0.05, max_lag_bytes=bound)
    lagging, healthy = replicated.replicas
    table = f"topo_lag_{uuid.uuid4().hex[:8]}"
    async with cluster:
        await asyncio.to_thread(replicated.wait_caught_up)  # earlier tests wrote too
        await cluster.refresh()
        assert {await cluster.replica() for _ in range(4)} == {lagging.host, healthy.host}
        await asyncio.to_thread(replicated.pause_replay, lagging)
        await asyncio.to_thread(
            replicated.query,
            replicated.primary,
            f"CREATE TABLE {table} AS SELECT g, repeat('x', 200) AS pad"
            " FROM generate_series(1, 5000) AS g",
        )

        def lag() -> int:
            return cluster.snapshot()[lagging.host].lag_bytes or 0

        await eventually(lambda: lag() > bound)
        # The healthy replica streams the same burst: wait until it is within bounds.
        await eventually(lambda: (cluster.snapshot()[healthy.host].lag_bytes or 0) <= bound)
        assert {await cluster.replica() for _ in range(10)} == {healthy.host}
        assert cluster.snapshot()[lagging.host].role is Role.REPLICA  # lagging, not down
        await asyncio.to_thread(replicated.resume_replay, lagging)
        await eventually(lambda: lag() <= bound)
        await eventually(lambda: cluster.picker.eligible(cluster.snapshot()) != (healthy.host,))
        assert {await cluster.replica() for _ in range(4)} == {lagging.host, healthy.host}


async def test_a_frozen_primary_never_holds_back_the_news_of_a_promotion(
    replicated: ReplicatedCluster, make_cluster: MakeCluster
) -> None:
    """The frozen primary's probe hangs for the whole (long) probe timeout; the promoted
    replica is named anyway, since a round during a failover does not wait for it."""
    cluster = make_cluster(probe_timeout=30.0, wait_timeout=10.0)
    old, new = replicated.primary, replicated.replicas[0]
    assert await cluster.master() == old.host
    replicated.freeze(old)
    try:
        cluster.report_failure(old.host, TimeoutError("statement hung"))
        await asyncio.sleep(0.1)  # a round is now waiting on the frozen host
        await asyncio.to_thread(replicated.promote, new)
        assert await cluster.master() == new.host  # within wait_timeout, not probe_timeout
        assert cluster.snapshot().primary == new.host
    finally:
        replicated.thaw(old)


async def test_a_frozen_primary_is_suspected_without_any_failure_report(
    replicated: ReplicatedCluster, make_cluster: MakeCluster
) -> None:
    """Nothing fails on a frozen host, so nobody reports it. Once its probe has taken a
    quarter of the probe timeout, the resolver stops offering it (here: no replica is
    promoted, so master() says there is no primary) long before the probe gives up."""
    cluster = make_cluster(interval=0.2, probe_timeout=8.0, wait_timeout=0.2)
    old = replicated.primary
    assert await cluster.master() == old.host
    replicated.freeze(old)
    try:
        deadline = time.monotonic() + 6.0  # the probe itself only gives up after 8 s
        while True:
            try:
                await cluster.master()
            except NoPrimaryError:
                break
            assert time.monotonic() < deadline, "the frozen primary was still offered"
            await asyncio.sleep(0.05)
    finally:
        replicated.thaw(old)
