"""ClusterResolver against real servers: one server, refused and black-holed hosts.

The failover cases (promotion, frozen primary, split brain, replay lag) run
on the replicated cluster in ``test_topology_failover.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest

from compose.pg import BlackHole, PostgresNode, free_port
from tests.support.settings import resolver_kwargs
from tests.support.waiting import eventually
from topology import (
    ClusterResolver,
    ConfigurationError,
    NoPrimaryError,
    ProbeError,
    Reason,
    ResolverClosedError,
    Role,
)

pytestmark = pytest.mark.integration

MakeCluster = Callable[..., ClusterResolver]


def backends(node: PostgresNode, application_name: str) -> int:
    with psycopg.connect(node.conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def other_tasks() -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


@pytest.fixture(params=["asyncpg", "psycopg"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_cluster(pg_server: PostgresNode, driver: str) -> AsyncIterator[MakeCluster]:
    """Build ClusterResolvers with the server's credentials; all closed at teardown."""
    made: list[ClusterResolver] = []

    def make(hosts: object, **kwargs: object) -> ClusterResolver:
        settings: dict[str, object] = {
            "user": "postgres",
            "password": pg_server.password,
            "database": "postgres",
            "driver": driver,
            "application_name": f"topo-{uuid.uuid4().hex[:10]}",
        }
        settings.update(kwargs)
        cluster = ClusterResolver(hosts, **resolver_kwargs(**settings))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


async def test_first_call_starts_then_answers_from_the_cache(
    pg_server: PostgresNode, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster([pg_server.host], interval=60)
    assert not cluster.running
    assert cluster.snapshot().round == 0
    assert await cluster.master() == pg_server.host
    assert cluster.running
    probes = cluster.stats().probes
    for _ in range(10_000):
        assert await cluster.master() == pg_server.host
    assert cluster.stats().probes == probes  # no network while the snapshot is fresh
    # No replica at all: a read goes to the primary.
    assert await cluster.replica() == pg_server.host
    snapshot = cluster.snapshot()
    assert snapshot.primary == pg_server.host
    assert snapshot[pg_server.host].role is Role.PRIMARY
    assert snapshot[pg_server.host].timeline == 1
    stats = cluster.stats()
    assert stats.rounds >= 1
    assert stats.running
    assert stats.last_round_at is not None


async def test_warm_resolver_calls_do_not_accumulate_memory(
    pg_server: PostgresNode, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster([pg_server.host], interval=60)
    await cluster.start()
    for _ in range(1000):  # warm up caches (e.g. the picker's eligible list)
        await cluster.master()
        await cluster.replica()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(100_000):
            await cluster.master()
            await cluster.replica()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16_384, grown


async def test_close_stops_every_task_and_probe_connection(
    pg_server: PostgresNode, make_cluster: MakeCluster
) -> None:
    name = f"topo-close-{uuid.uuid4().hex[:8]}"
    cluster = make_cluster([pg_server.host], interval=0.05, application_name=name)
    async with cluster:
        await asyncio.sleep(0.2)  # a few rounds
        assert backends(pg_server, name) == 1  # one persistent connection, reused
    assert not cluster.running
    assert not other_tasks()
    await eventually(lambda: backends(pg_server, name) == 0)
    # Closed twice: fine. Closed for good: a later call starts nothing (test_closed.py).
    await cluster.close()
    with pytest.raises(ResolverClosedError):
        await cluster.master()
    await cluster.close()
    assert not other_tasks()


async def test_all_hosts_down_raises_no_primary_with_every_reason(
    make_cluster: MakeCluster,
) -> None:
    with BlackHole() as hole:
        refused = f"127.0.0.1:{free_port()}"
        cluster = make_cluster([refused, hole.host], probe_timeout=0.3, wait_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(NoPrimaryError) as info:
            await cluster.master()
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.0 + 0.3 + 1.0, elapsed
    causes = info.value.causes
    assert set(causes) == {refused, hole.host}
    assert isinstance(causes[refused], ProbeError)
    assert isinstance(causes[hole.host], ProbeError)
    assert causes[refused].reason is Reason.CONNECTION_REFUSED  # type: ignore[union-attr]
    assert causes[hole.host].reason is Reason.TIMED_OUT  # type: ignore[union-attr]
    assert "connection refused" in str(info.value)
    assert "timed out" in str(info.value)
    # While no primary is known the loop polls fast.
    assert cluster.stats().rounds >= 2


async def test_wrong_password_fails_fast_and_is_not_retried_in_a_loop(
    pg_server: PostgresNode, make_cluster: MakeCluster
) -> None:
    log_before = pg_server.log_file.read_text(errors="replace").count(
        "password authentication failed"
    )
    cluster = make_cluster([pg_server.host], password="wrong-password", wait_timeout=1.0)
    with pytest.raises(NoPrimaryError, match="authentication failed") as info:
        await cluster.master()
    cause = info.value.causes[pg_server.host]
    assert isinstance(cause, ProbeError)
    assert cause.reason is Reason.AUTHENTICATION_FAILED
    assert "wrong-password" not in str(info.value)
    assert pg_server.password not in str(info.value)
    # A second of fast polling, yet the server saw one failed login (the host is held).
    assert cluster.stats().rounds > 5
    await asyncio.sleep(0.2)  # the server writes its log asynchronously
    log_after = pg_server.log_file.read_text(errors="replace").count(
        "password authentication failed"
    )
    assert log_after - log_before == 1


async def test_dead_hosts_cost_one_probe_timeout_per_round_not_one_each(
    pg_server: PostgresNode, make_cluster: MakeCluster
) -> None:
    timeout = 1.5
    with BlackHole() as hole1, BlackHole() as hole2:
        hosts = [hole1.host, f"127.0.0.1:{free_port()}", hole2.host, pg_server.host]
        # Pinned: with the identity still to be learned, the first snapshot would
        # wait for the whole round (the host that answers first might be foreign).
        with psycopg.connect(pg_server.conninfo()) as conn:
            row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
        assert row is not None
        cluster = make_cluster(
            hosts, probe_timeout=timeout, interval=60, system_identifier=int(row[0])
        )
        started = time.monotonic()
        await cluster.start()
        # The primary is published as soon as it answers, before the holes time out.
        assert cluster.snapshot().primary == pg_server.host
        assert time.monotonic() - started < timeout - 0.5
        snapshot = await cluster.refresh()
        assert snapshot.complete
        assert snapshot.round >= 2
        duration = cluster.stats().last_round_duration
        assert duration is not None
        assert duration < timeout + 1.0, duration
        roles = [snapshot[h].role for h in hosts]
        assert roles == [Role.DOWN, Role.DOWN, Role.DOWN, Role.PRIMARY]


async def test_callbacks_listeners_and_failure_reports(
    pg_server: PostgresNode, make_cluster: MakeCluster
) -> None:
    cluster = make_cluster([pg_server.host], interval=60)
    changes: list[tuple[str | None, str | None]] = []
    masters: list[str | None] = []
    replicas: list[str | None] = []

    def broken(host: str | None) -> None:
        raise RuntimeError("a listener bug must not break the loop")

    cluster.on_change(lambda old, new: changes.append((old.primary, new.primary)))
    cluster.master.add_listener(broken)
    unsubscribe = cluster.master.add_listener(masters.append)
    cluster.replica.add_listener(replicas.append)
    await cluster.start()
    assert changes == [(None, pg_server.host)]
    assert masters == [pg_server.host]
    assert replicas == [pg_server.host]  # no replica: reads fall back to the primary

    # A failure report takes the host off the fast path until a new round confirms it.
    cluster.master.report_failure(pg_server.host, ConnectionResetError("gone"))
    assert cluster.stats().failure_reports == 1
    assert await cluster.master() == pg_server.host
    assert masters == [pg_server.host]  # confirmed, not changed: no notification
    unsubscribe()
    unsubscribe()  # idempotent

    # From another thread too.
    thread = threading.Thread(target=cluster.replica.report_failure, args=(pg_server.host, None))
    thread.start()
    thread.join(5)
    await eventually(lambda: cluster.stats().failure_reports == 2)
    assert await cluster.master() == pg_server.host
    assert cluster.stats().role_changes == 0


async def test_from_url_and_no_password_in_repr(pg_server: PostgresNode, driver: str) -> None:
    url = pg_server.url().replace(pg_server.host, f"127.0.0.1:{free_port()},{pg_server.host}")
    cluster = ClusterResolver.from_url(url + "?application_name=from-url", driver=driver)
    try:
        assert len(cluster.hosts) == 2
        assert cluster.options.application_name == "from-url"
        assert await cluster.master() == pg_server.host
        for text in (repr(cluster), repr(cluster.master), repr(cluster.options)):
            assert pg_server.password not in text
    finally:
        await cluster.close()


def test_one_cluster_serves_successive_event_loops(pg_server: PostgresNode) -> None:
    """A module-level cluster used by two asyncio.run() calls restarts on the second loop."""
    cluster = ClusterResolver(
        [pg_server.host], user="postgres", password=pg_server.password, database="postgres"
    )

    async def use() -> str:
        return await cluster.master()

    assert asyncio.run(use()) == pg_server.host
    assert asyncio.run(use()) == pg_server.host
    asyncio.run(cluster.close())


async def test_close_is_bounded_while_a_round_hangs_on_a_black_hole(
    make_cluster: MakeCluster,
) -> None:
    with BlackHole() as hole:
        cluster = make_cluster([hole.host], probe_timeout=5, wait_timeout=0.1)
        with pytest.raises(NoPrimaryError):
            await cluster.master()
        assert cluster.running  # the first round still waits on the hole
        started = time.monotonic()
        await cluster.close(timeout=1)
        assert time.monotonic() - started < 1.5
    assert not other_tasks()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hosts": []}, "no host given"),
        ({"hosts": ["h:0"]}, "invalid port"),
        ({"interval": 0}, "interval must be a number of seconds > 0"),
        ({"probe_timeout": -1}, "probe_timeout must be"),
        ({"replica_strategy": "nearest"}, "unknown replica strategy"),
        ({"driver": "pg8000"}, "unknown probe driver"),
        ({"sslmod": "require"}, "unknown connection option"),
        ({"sslmode": "sometimes"}, "invalid sslmode"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    hosts = kwargs.pop("hosts", ["h1"])
    with pytest.raises(ConfigurationError, match=message):
        ClusterResolver(hosts, password="hunter2", **resolver_kwargs(**kwargs))
