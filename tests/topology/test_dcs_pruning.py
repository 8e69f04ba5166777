"""What a cluster holds for a host goes when the DCS drops that host.

Regressions (issue 21):

* item 3: a suspect (a primary reported failing while its probe hangs) was
  kept after the DCS dropped that member; no probe could ever clear it, so
  the loop ran fast rounds (~47/s) forever instead of one per ``dcs_interval``;
* item 8: ``replica.at_least`` kept a live connection to every replica it
  ever asked, also after the DCS dropped it (pod addresses that never return).

The DCS is a small real :class:`topology.dcs.DcsWatch` of the test's own
(views pushed by the test); the servers are real, the frozen one stopped
with SIGSTOP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest

from compose.pg import PostgresNode, ReplicatedCluster, free_port
from tests.support.dcs_watch import PushedViews
from tests.support.settings import resolver_kwargs
from tests.support.waiting import eventually
from topology import ClusterResolver, ConnectOptions
from topology.dcs import DcsMember, DcsView
from topology.probing.drivers import get_driver
from topology.view.caught_up import MAX_HOSTS, CaughtUpFinder

pytestmark = pytest.mark.integration


def view_of(leader: PostgresNode, *nodes: PostgresNode) -> DcsView:
    members = tuple(DcsMember(node.name, node.host) for node in nodes)
    return DcsView(leader.name, tuple(sorted(members, key=lambda m: m.name)))


def backends(node: PostgresNode, password: str, application_name: str) -> int:
    conninfo = f"host=127.0.0.1 port={node.port} user=postgres dbname=postgres password={password}"
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def follow(replicated: ReplicatedCluster) -> AsyncIterator[Callable[..., ClusterResolver]]:
    """``follow(watch, **kwargs)``: a resolver on ``watch`` alone; closed at teardown."""
    made: list[ClusterResolver] = []

    def make(watch: PushedViews, **kwargs: object) -> ClusterResolver:
        settings: dict[str, object] = {
            "user": "postgres",
            "password": replicated.password,
            "database": "postgres",
            "application_name": f"topo-{uuid.uuid4().hex[:10]}",
            "probe_timeout": 0.5,
            "wait_timeout": 10.0,
        }
        settings.update(kwargs)
        settings["dcs_allow"] = "127.0.0.0/8"  # the members run on loopback
        made.append(ClusterResolver((), dcs=watch, **resolver_kwargs(**settings)))
        return made[-1]

    yield make
    for cluster in made:
        await cluster.close()


async def test_a_suspect_the_dcs_dropped_no_longer_keeps_rounds_fast(
    replicated: ReplicatedCluster, follow: Callable[..., ClusterResolver]
) -> None:
    old, new, other = replicated.primary, *replicated.replicas
    watch = PushedViews(view_of(old, old, new, other))
    cluster = follow(watch)
    assert await cluster.master() == old.host
    replicated.freeze(old)
    try:
        cluster.report_failure(old.host, TimeoutError("statement hung"))  # its probe hangs
        await asyncio.sleep(0.1)
        await asyncio.to_thread(replicated.promote, new)
        watch.push(view_of(new, new, other))  # the DCS drops the frozen member
        assert await cluster.master() == new.host
        await eventually(lambda: not cluster.view.suspects and cluster.view.primary == new.host)
        rounds = cluster.stats().rounds
        await asyncio.sleep(3.0)
        # Calm again: one round per dcs_interval (15 s), not one per fast_interval.
        assert cluster.stats().rounds - rounds < 10
        assert cluster.snapshot().get(old.host) is None
    finally:
        replicated.thaw(old)


async def test_read_your_writes_lets_go_of_a_replica_the_dcs_dropped(
    replicated: ReplicatedCluster, follow: Callable[..., ClusterResolver]
) -> None:
    primary, kept, dropped = replicated.primary, *replicated.replicas
    watch = PushedViews(view_of(primary, primary, kept, dropped))
    name = f"topo-ryw-{uuid.uuid4().hex[:8]}"
    cluster = follow(watch, application_name=name)
    assert await cluster.master() == primary.host
    write = "CREATE TABLE IF NOT EXISTS t21_pruning (n int); INSERT INTO t21_pruning VALUES (1)"
    replicated.query(primary, write)
    lsn = replicated.current_lsn()  # newer than the snapshot: both replicas are asked
    assert await cluster.replica.at_least(lsn, max_wait=5) in (kept.host, dropped.host)
    await eventually(lambda: backends(dropped, replicated.password, name) >= 1)
    watch.push(view_of(primary, primary, kept))
    await eventually(lambda: backends(dropped, replicated.password, name) == 0)
    assert dropped.host not in cluster._caught_up.hosts


async def test_read_your_writes_holds_a_bounded_number_of_hosts() -> None:
    """Hosts that come and go (pod addresses) never pile up: the least recently asked go."""
    finder = CaughtUpFinder(ConnectOptions(user="postgres"), get_driver("asyncpg"), timeout=0.5)
    hosts = tuple(f"127.0.0.1:{free_port()}" for _ in range(MAX_HOSTS + 8))  # nothing listens
    try:
        for host in hosts:  # one at a time, as replicas replaced one after the other
            assert await finder.ask((host,), 1, time.monotonic() + 0.05) is None
        assert len(finder.hosts) <= MAX_HOSTS
        assert hosts[-1] in finder.hosts
        assert hosts[0] not in finder.hosts
    finally:
        await finder.close(1.0)
