"""Cluster identity on real servers: a host of another cluster, a re-initialised cluster.

``pg_foreign`` is a standalone server of its own initdb (another system
identifier) that the replicated cluster's credentials log in to.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest

from compose.pg import PostgresNode, ReplicatedCluster
from tests.support.settings import resolver_kwargs
from tests.support.waiting import eventually
from topology import ClusterResolver, ConfigurationError, HostProber, Role
from topology.hosts import ConnectOptions, parse_host

pytestmark = pytest.mark.cluster

MakeCluster = Callable[..., ClusterResolver]


def run(node: PostgresNode, statement: str) -> None:
    with psycopg.connect(node.conninfo(), autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def identifier(node: PostgresNode) -> int:
    with psycopg.connect(node.conninfo()) as conn:
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def make_cluster(replicated: ReplicatedCluster) -> AsyncIterator[MakeCluster]:
    made: list[ClusterResolver] = []

    def make(hosts: list[str], **kwargs: object) -> ClusterResolver:
        settings: dict[str, object] = {
            "user": "postgres",
            "password": replicated.password,
            "database": "postgres",
            "application_name": f"ident-{uuid.uuid4().hex[:10]}",
            "interval": 0.2,
            "probe_timeout": 0.5,
            "wait_timeout": 10.0,
        }
        settings.update(kwargs)
        cluster = ClusterResolver(hosts, **resolver_kwargs(**settings))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_probe_reads_the_identifier_and_does_without_it_when_not_allowed(
    pg_foreign: PostgresNode, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Any login reads the identifier; where pg_control_system() is revoked the
    host still probes fine, with an unknown identifier and one WARNING."""
    role = f"plain_{uuid.uuid4().hex[:8]}"
    run(pg_foreign, f"CREATE ROLE {role} LOGIN PASSWORD 'plain-pw-1'")
    options = ConnectOptions(user=role, password="plain-pw-1", database="postgres")
    prober = HostProber(parse_host(pg_foreign.host), options, driver)
    try:
        first = await prober.probe()
        assert first.ok
        assert first.system_identifier == identifier(pg_foreign)
        run(pg_foreign, "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
        with caplog.at_level(logging.WARNING, logger="topology.probe"):
            revoked = await prober.probe()
            again = await prober.probe()
        assert revoked.ok, revoked.error
        assert again.ok, again.error
        assert revoked.system_identifier is None
        assert again.system_identifier is None
        assert prober.connects == 1  # the same connection goes on
        warnings = [r for r in caplog.records if "pg_control_system()" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        run(pg_foreign, "GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC")
        run(pg_foreign, f"DROP ROLE IF EXISTS {role}")
        await prober.close()


async def test_a_host_of_another_cluster_is_excluded_and_reported(
    replicated: ReplicatedCluster,
    pg_foreign: PostgresNode,
    make_cluster: MakeCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A standalone primary in the host list (first, even) is no split brain:
    it is foreign, never resolved, and said so with both identifiers."""
    ours, theirs = identifier(replicated.primary), identifier(pg_foreign)
    assert ours != theirs
    cluster = make_cluster([pg_foreign.host, *replicated.hosts])
    with caplog.at_level(logging.WARNING, logger="topology"):
        await cluster.start()
    snapshot = cluster.snapshot()
    assert snapshot[pg_foreign.host].role is Role.FOREIGN
    assert snapshot[pg_foreign.host].system_identifier == theirs
    assert snapshot.foreign == (pg_foreign.host,)
    assert snapshot.by_role(Role.STALE_PRIMARY) == ()
    assert cluster.system_identifier == cluster.replica.system_identifier == ours
    assert cluster.master.system_identifier == snapshot.system_identifier == ours
    assert await cluster.master() == replicated.primary.host
    reads = {await cluster.replica() for _ in range(6)}
    assert reads == {node.host for node in replicated.replicas}
    expected = f"belongs to another cluster: system identifier {theirs}, the cluster's is {ours}"
    assert snapshot.causes()[pg_foreign.host] == expected
    assert any(expected in r.getMessage() for r in caplog.records)


async def test_a_pinned_identifier_decides_which_cluster_is_foreign(
    replicated: ReplicatedCluster, pg_foreign: PostgresNode, make_cluster: MakeCluster
) -> None:
    """Pinned to the standalone server's identifier, the replicated cluster is the foreign one."""
    theirs = identifier(pg_foreign)
    cluster = make_cluster([*replicated.hosts, pg_foreign.host], system_identifier=theirs)
    assert await cluster.master() == pg_foreign.host
    snapshot = await cluster.refresh()  # complete: every host answered
    assert snapshot.foreign == tuple(replicated.hosts)
    assert snapshot.replicas == ()
    assert cluster.system_identifier == theirs


async def test_bad_pinned_identifier_is_a_configuration_error(
    replicated: ReplicatedCluster,
) -> None:
    with pytest.raises(ConfigurationError, match="system_identifier must be an integer"):
        ClusterResolver(replicated.hosts, system_identifier="7713408070433815488")  # type: ignore[arg-type]


async def test_a_reinitialised_cluster_is_followed_without_restart(
    replicated: ReplicatedCluster, make_cluster: MakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """After a failover (timeline 2) the whole cluster is initdb'ed again (timeline 1,
    a new identifier): the resolver follows the new primary instead of calling it stale."""
    promoted = replicated.replicas[0]
    await asyncio.to_thread(replicated.promote, promoted)
    cluster = make_cluster(replicated.hosts)
    assert await cluster.master() == promoted.host
    old = cluster.system_identifier
    assert cluster.snapshot().max_timeline == 2
    with caplog.at_level(logging.WARNING, logger="topology"):
        await asyncio.to_thread(replicated.rebuild, new_identity=True)
        fresh = replicated.nodes[0]
        await eventually(lambda: cluster.snapshot().primary == fresh.host)
    new = identifier(fresh)
    assert new != old
    assert cluster.system_identifier == new
    assert await cluster.master() == fresh.host
    snapshot = cluster.snapshot()
    assert snapshot.max_timeline == 1
    assert snapshot.foreign == ()
    await eventually(lambda: len(cluster.snapshot().replicas) == 2)
    assert any(f"system identifier {old} -> {new}" in r.getMessage() for r in caplog.records)
