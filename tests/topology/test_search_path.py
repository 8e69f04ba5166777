"""Every statement topology sends is immune to a search_path that shadows pg_catalog.

The login ``shadowed`` (see ``tests.support.shadowed``) resolves unqualified
names in a schema ``evil`` first, whose impostors give wrong values or
wrong types for every catalog function, view, type and operator the probe
uses. The probe (both drivers, primary and standby branches, with and
without the system identifier), the caught-up checks, the CLI and a
resolver must all see what the catalog says.
"""

from __future__ import annotations

import io
import json
import re
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from compose.pg import PostgresNode, ReplicatedCluster
from tests.support.shadowed import Shadowed
from topology import ClusterResolver, ConnectOptions, Timing, parse_host
from topology.probe.cli import main
from topology.probing._watch import watch_statement
from topology.probing.drivers import get_driver
from topology.probing.prober import HostProber
from topology.probing.result import ANONYMOUS_PROBE_QUERY, PROBE_QUERY
from topology.view.caught_up import CaughtUpFinder

pytestmark = pytest.mark.cluster

DRIVERS = ["asyncpg", "psycopg"]


def options(shadowed: Shadowed) -> ConnectOptions:
    return ConnectOptions(
        user=shadowed.user, password=shadowed.password, database=shadowed.database
    )


def catalog_names(statement: str) -> set[str]:
    return set(re.findall(r"pg_catalog\.\"?(\w+)", statement))


def evil_names(shadowed: Shadowed) -> set[str]:
    conninfo = shadowed.cluster.primary.conninfo(shadowed.database)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT proname::text FROM pg_proc WHERE pronamespace = 'evil'::regnamespace "
            "UNION SELECT relname::text FROM pg_class WHERE relnamespace = 'evil'::regnamespace "
            "UNION SELECT typname::text FROM pg_type WHERE typnamespace = 'evil'::regnamespace"
        ).fetchall()
    return {name for (name,) in rows}


def truth(cluster: ReplicatedCluster, node_index: int) -> dict[str, object]:
    """What the catalog says, read by the superuser with the default search_path."""
    node = cluster.nodes[node_index]
    ((in_recovery, identifier, timeline),) = cluster.query(
        node,
        "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system()), "
        "CASE WHEN pg_is_in_recovery() THEN "
        "(SELECT received_tli FROM pg_stat_wal_receiver) "
        "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END",
    )
    return {"in_recovery": in_recovery, "system_identifier": identifier, "timeline": timeline}


async def test_every_catalog_name_used_has_an_impostor(shadowed: Shadowed) -> None:
    """The impostors cover every name the probe queries use, and they are really picked."""
    used = catalog_names(PROBE_QUERY) | catalog_names(ANONYMOUS_PROBE_QUERY)
    used |= catalog_names(watch_statement(1.0, 0.001))
    assert used, "the probe queries name no catalog object"
    assert used <= evil_names(shadowed), used - evil_names(shadowed)
    driver = get_driver("psycopg")
    conn = await driver.connect(parse_host(shadowed.cluster.primary.host), options(shadowed), 5)
    try:  # the same login, unqualified: the impostors answer
        row = await conn.fetch_row("SELECT pg_is_in_recovery(), now()")
    finally:
        await conn.close()
    assert row[0] is True  # the primary, as the impostor tells it
    assert row[1].year == 2000


@pytest.mark.parametrize("driver", DRIVERS)
async def test_probe_reads_the_catalog_on_primary_and_standby(
    shadowed: Shadowed, driver: str
) -> None:
    cluster = shadowed.cluster
    for index, node in enumerate(cluster.nodes):
        expected = truth(cluster, index)
        before = cluster.current_lsn()
        prober = HostProber(parse_host(node.host), options(shadowed), driver, timeout=5)
        try:
            result = await prober.probe()
        finally:
            await prober.close(5)
        assert result.ok, result.error
        assert result.in_recovery is expected["in_recovery"], node.name
        assert result.system_identifier == expected["system_identifier"]
        assert result.timeline == expected["timeline"]
        assert result.lsn is not None
        assert 0 < result.lsn < 0xFFFF << 32
        if not result.in_recovery:
            assert result.lsn >= _lsn(before)
        else:
            assert result.receive_lsn is not None
            assert result.receive_lsn < 0xFFFF << 32
        assert result.server_time is not None
        assert abs(result.server_time - datetime.now(timezone.utc)) < timedelta(minutes=5)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_anonymous_probe_query_reads_the_catalog(shadowed: Shadowed, driver: str) -> None:
    """The query used where pg_control_system() is revoked is qualified as well."""
    cluster = shadowed.cluster
    conn = await get_driver(driver).connect(parse_host(cluster.primary.host), options(shadowed), 5)
    try:
        anonymous = await conn.fetch_row(ANONYMOUS_PROBE_QUERY)
    finally:
        await conn.close()
    assert anonymous[0] is False  # the primary
    assert anonymous[3] == truth(cluster, 0)["timeline"]
    assert anonymous[5].year != 2000
    assert anonymous[6] is None


@pytest.mark.parametrize("driver", DRIVERS)
async def test_the_promotion_watch_reads_the_catalog(shadowed: Shadowed, driver: str) -> None:
    """On a standby the watch waits its whole time (the impostors would end it at once,
    or never); on the primary it ends at once. Both then probe the real state."""
    cluster = shadowed.cluster
    standby, primary = (
        HostProber(parse_host(node.host), options(shadowed), driver, timeout=5)
        for node in (cluster.replicas[0], cluster.primary)
    )
    try:
        for prober in (standby, primary):
            assert (await prober.probe()).ok  # the watch runs on an open connection
        started = time.monotonic()
        waited = await standby.watch(0.5, 0.001)
        waited_for = time.monotonic() - started
        started = time.monotonic()
        ended = await primary.watch(30.0, 0.001)
        ended_after = time.monotonic() - started
    finally:
        await standby.close(5)
        await primary.close(5)
    assert waited is not None
    assert waited.ok
    assert waited.in_recovery is True
    assert waited_for >= 0.5
    assert ended is not None
    assert ended.ok
    assert ended.in_recovery is False
    assert ended_after < 5  # the impostors' year 2000 would have kept it 30 s


async def test_caught_up_check_reads_the_catalog(shadowed: Shadowed) -> None:
    cluster = shadowed.cluster
    target = _lsn(cluster.current_lsn())
    cluster.wait_caught_up()
    replicas = tuple(node.host for node in cluster.replicas)
    finder = CaughtUpFinder(options(shadowed), get_driver("asyncpg"), timeout=5)
    try:
        found = await finder.ask(replicas, target, time.monotonic() + 10)
        beyond = await finder.ask(replicas, 0xFFFE << 32, time.monotonic() + 0.3)
    finally:
        await finder.close(5)
    assert found in replicas
    assert beyond is None  # the impostors' FFFF/0 would have said yes


@pytest.mark.parametrize("driver", DRIVERS)
async def test_resolver_resolves_with_the_shadowed_login(shadowed: Shadowed, driver: str) -> None:
    """A resolver over shadowed hosts finds the real primary and real replicas."""
    cluster = shadowed.cluster
    hosts = [*(node.host for node in cluster.replicas), cluster.primary.host]
    resolver = ClusterResolver(
        hosts,
        user=shadowed.user,
        password=shadowed.password,
        database=shadowed.database,
        driver=driver,
        timing=Timing(interval=60.0, probe_timeout=2.0, wait_timeout=10.0),
    )
    async with resolver:
        await resolver.refresh()
        assert await resolver.master() == cluster.primary.host
        assert await resolver.replica() in {node.host for node in cluster.replicas}


def test_cli_reads_the_catalog(shadowed: Shadowed) -> None:
    cluster = shadowed.cluster
    env = {"PGUSER": shadowed.user, "PGPASSWORD": shadowed.password, "HOME": "/nonexistent"}
    out, err = io.StringIO(), io.StringIO()
    argv = [*cluster.hosts, "-d", shadowed.database, "--json", "--timeout", "5"]
    code = main(argv, env, out, err, process_hooks=False)
    assert shadowed.password not in out.getvalue() + err.getvalue()
    assert code == 0, out.getvalue() + err.getvalue()
    doc = json.loads(out.getvalue())
    assert doc["primary"] == cluster.primary.host
    assert sorted(doc["healthy_replicas"]) == sorted(node.host for node in cluster.replicas)
    assert doc["system_identifier"] == str(truth(cluster, 0)["system_identifier"])
    assert doc["max_timeline"] == truth(cluster, 0)["timeline"]


def _lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@pytest.mark.parametrize("driver", DRIVERS)
async def test_a_shadowed_host_beside_a_healthy_cluster_blocks_nothing(
    shadowed_foreign: Shadowed, pg_foreign: PostgresNode, driver: str
) -> None:
    """The issue's measurement: a host whose search_path shadows pg_control_system() with
    a function of another type, listed first; the real primary must still be resolved,
    and the shadowed host is read correctly (a primary of another cluster: foreign)."""
    cluster = shadowed_foreign.cluster
    resolver = ClusterResolver(
        [pg_foreign.host, *cluster.hosts],
        user=shadowed_foreign.user,
        password=shadowed_foreign.password,
        database=shadowed_foreign.database,
        driver=driver,
        timing=Timing(interval=60.0, probe_timeout=2.0, wait_timeout=10.0),
    )
    async with resolver:
        snapshot = await resolver.refresh()
        assert await resolver.master() == cluster.primary.host
    foreign = snapshot[pg_foreign.host]
    assert foreign.error is None, foreign.error
    assert snapshot.foreign == (pg_foreign.host,)
    assert foreign.system_identifier == _identifier(pg_foreign)


def _identifier(node: PostgresNode) -> int:
    with psycopg.connect(node.conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert row is not None
    return int(row[0])
