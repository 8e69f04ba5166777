"""ClusterResolver.from_patroni on the real Patroni + etcd cluster (tests/support/patroni.py).

Each behaviour of the DCS source on real processes: members and leader read
from etcd, a leader change pushed (the SQL interval is a minute, so only the
push explains following it), SQL winning over a store that names a replica,
members added and removed, and an etcd the app cannot reach (partitioned by a
frozen TCP forwarder, or stopped) while writes go on: SQL-only probing, one
WARNING, and back. The forwarder sits between the app and etcd only, so
Patroni keeps its DCS and the cluster stays healthy.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from tests.support.hostile_http import HostileHttp
from tests.support.paths import REPO_ROOT
from tests.support.patroni import PatroniCluster
from tests.support.settings import resolver_kwargs
from tests.support.waiting import eventually
from topology import ClusterResolver, PatroniConfig
from topology.pace import DcsPace
from topology.trace import Counters, Event, FailureReported, PrimaryFound, ProbeStarted

pytestmark = pytest.mark.cluster


def etcd_call(patroni: PatroniCluster, path: str, body: dict[str, str]) -> Any:
    """One call to the real etcd's JSON gateway (keys and values in base64), over TLS
    as etcd user ``patroni`` (readwrite on the namespace)."""
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in body.items()}
    return patroni.cluster.dcs_gateway("patroni").call(path, encoded)


def app_config(patroni: PatroniCluster, **changes: Any) -> PatroniConfig:
    """The cluster's app-side Patroni YAML (etcd over TLS, read-only user ``app``);
    ``scope``/``namespace`` replaced, ``etcd`` (one endpoint URL) too, when given."""
    config = PatroniConfig.load(patroni.app_config_path)
    etcd = changes.pop("etcd", None)
    if etcd is not None:
        assert config.etcd is not None
        changes["etcd"] = dataclasses.replace(config.etcd, endpoints=(etcd,))
    return dataclasses.replace(config, **changes)


def member_json(host: str) -> str:
    return json.dumps({"conn_url": f"postgres://{host}/postgres", "state": "running"})


def probed(cluster: ClusterResolver) -> list[str]:
    return [state.host for state in cluster.snapshot().hosts]


def probe_connections(patroni: PatroniCluster, application_name: str) -> int:
    """Connections with ``application_name`` open on all members, server-side."""
    total = 0
    for host in patroni.hosts:
        with psycopg.connect(**patroni.conninfo(host), autocommit=True) as conn:  # type: ignore[arg-type]
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            ).fetchone()
            total += int(row[0]) if row else 0
    return total


@pytest.fixture
async def make_resolver(patroni_cluster: PatroniCluster) -> AsyncIterator[Any]:
    made: list[ClusterResolver] = []

    def make(**kwargs: Any) -> ClusterResolver:
        if "rest" in kwargs:  # the REST API as the source, not etcd
            source: dict[str, Any] = {}
        else:
            dcs = {k: kwargs.pop(k) for k in ("etcd", "scope", "namespace") if k in kwargs}
            source = {"config": app_config(patroni_cluster, **dcs)}
        settings: dict[str, Any] = {
            **source,
            "user": patroni_cluster.superuser,
            "password": patroni_cluster.password,
            "database": "postgres",
            "application_name": f"dcs-{uuid.uuid4().hex[:10]}",
            "interval": 60.0,
            "dcs_interval": 60.0,
            "probe_timeout": 1.0,
            "wait_timeout": 10.0,
            "dcs_allow": "127.0.0.0/8",  # the members run on loopback
            **kwargs,
        }
        cluster = ClusterResolver.from_patroni(**resolver_kwargs(**settings))
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


async def test_members_and_leader_come_from_the_dcs_and_no_probe_connection_is_held(
    patroni_cluster: PatroniCluster, make_resolver: Any
) -> None:
    leader = patroni_cluster.leader()
    cluster = make_resolver()
    sql_only = ClusterResolver(
        patroni_cluster.hosts, user=patroni_cluster.superuser, password=patroni_cluster.password,
        database="postgres", application_name=f"sql-{uuid.uuid4().hex[:10]}",
    )  # fmt: skip
    async with cluster, sql_only:
        assert await cluster.master() == f"127.0.0.1:{leader.port}"
        assert sorted(probed(cluster)) == sorted(patroni_cluster.hosts)
        assert await sql_only.master() == f"127.0.0.1:{leader.port}"
        stats = cluster.stats()
        assert stats.dcs_answers is True
        assert stats.dcs_outages == 0
        assert stats.dcs_views >= 1
        name = cluster.options.application_name
        assert name is not None
        assert sql_only.options.application_name is not None
        await eventually(lambda: probe_connections(patroni_cluster, name) == 0, timeout=10)
        # SQL-only keeps one per host: the difference the DCS makes.
        assert probe_connections(patroni_cluster, sql_only.options.application_name) == 3
        assert sql_only.stats().dcs_answers is None


async def test_a_leader_change_is_pushed(
    patroni_cluster: PatroniCluster, make_resolver: Any
) -> None:
    events: list[Event] = []
    cluster = make_resolver(tracer=events.append)
    async with cluster:
        old = await cluster.master()
        new_leader = await asyncio.to_thread(patroni_cluster.switchover)
        new = f"127.0.0.1:{new_leader.port}"
        assert new != old
        # Rounds every 60 s and no request failing: only the DCS can say it.
        await eventually(lambda: cluster.view.primary == new, timeout=30)
        assert await cluster.master() == new
        # The push put the old primary in doubt (a hint: no failure report counted).
        assert any(isinstance(e, FailureReported) and e.host == old for e in events)
    # From the push to the new primary, only the hosts in question were probed:
    # the named leader and the primary in doubt, never the other replica.
    pushed = next(i for i, e in enumerate(events) if isinstance(e, FailureReported))
    found = next(i for i, e in enumerate(events) if isinstance(e, PrimaryFound) and e.host == new)
    probed_meanwhile = {e.host for e in events[pushed:found] if isinstance(e, ProbeStarted)}
    assert probed_meanwhile <= {old, new}  # none at all when the DCS confirms it first


@pytest.fixture
def own_scope(patroni_cluster: PatroniCluster) -> Iterator[str]:
    """A scope of our own in the real etcd, written by the test; removed afterwards."""
    scope = f"split{uuid.uuid4().hex[:8]}"
    yield scope
    prefix = f"/service/{scope}/"
    etcd_call(
        patroni_cluster, "/v3/kv/deleterange", {"key": prefix, "range_end": prefix[:-1] + "0"}
    )


async def test_sql_wins_over_the_dcs_and_members_follow_the_keys(
    patroni_cluster: PatroniCluster, make_resolver: Any, own_scope: str
) -> None:
    leader = patroni_cluster.leader()
    replicas = patroni_cluster.replicas()
    prefix = f"/service/{own_scope}/"
    for member, host in zip(("m1", "m2", "m3"), patroni_cluster.hosts, strict=True):
        etcd_call(patroni_cluster, "/v3/kv/put", {"key": prefix + "members/" + member,
                                                   "value": member_json(host)})  # fmt: skip
    named = patroni_cluster.hosts.index(f"127.0.0.1:{replicas[0].port}")
    etcd_call(patroni_cluster, "/v3/kv/put", {"key": prefix + "leader", "value": f"m{named + 1}"})
    # Rounds every 5 s while the store answers: a first probe of the returning
    # member that fails (a busy machine) is followed by another within the wait.
    cluster = make_resolver(scope=own_scope, namespace="/service", dcs_interval=5.0)
    async with cluster:
        # The store names a replica; the probes say who accepts writes.
        assert await cluster.master() == f"127.0.0.1:{leader.port}"
        dropped = patroni_cluster.hosts[named]
        etcd_call(patroni_cluster, "/v3/kv/deleterange", {"key": prefix + f"members/m{named + 1}"})
        await eventually(lambda: dropped not in probed(cluster), timeout=10)
        assert len(cluster.snapshot().hosts) == 2
        etcd_call(patroni_cluster, "/v3/kv/put", {"key": prefix + f"members/m{named + 1}",
                                                   "value": member_json(dropped)})  # fmt: skip
        await eventually(lambda: dropped in probed(cluster), timeout=10)
        await eventually(lambda: dropped in cluster.snapshot().replicas, timeout=35)
        assert await cluster.master() == f"127.0.0.1:{leader.port}"


@pytest.fixture
def etcd_forwarder(patroni_cluster: PatroniCluster) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A TCP forwarder to etcd in its own process: SIGSTOP partitions, SIGKILL stops it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "compose.bench._forward",
         str(patroni_cluster.cluster.layout.etcd_client_port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield proc, port
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


async def _write(patroni: PatroniCluster, cluster: ClusterResolver) -> int:
    host = await cluster.master()

    def insert() -> int:
        with psycopg.connect(**patroni.conninfo(host), autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute("CREATE TABLE IF NOT EXISTS dcs_writes (id serial)")
            conn.execute("INSERT INTO dcs_writes DEFAULT VALUES")
        return 1

    return await asyncio.to_thread(insert)


async def test_an_unreachable_dcs_falls_back_to_sql_and_back_while_writes_go_on(
    patroni_cluster: PatroniCluster,
    make_resolver: Any,
    etcd_forwarder: tuple[subprocess.Popen[str], int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    forwarder, port = etcd_forwarder
    counters = Counters()
    cluster = make_resolver(
        etcd=f"https://127.0.0.1:{port}",
        dcs_timeout=0.3,
        dcs_check_interval=0.3,
        interval=0.2,
        dcs_pace=DcsPace(lost_interval=0.2),
        tracer=counters,
    )
    name = cluster.options.application_name
    writes = 0

    async def writing_until(condition: Any, timeout: float = 15) -> None:
        nonlocal writes
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "condition never met"
            writes += await _write(patroni_cluster, cluster)  # raises if a write fails
            await asyncio.sleep(0.02)

    async with cluster:
        await writing_until(lambda: cluster.stats().dcs_answers)
        await writing_until(lambda: probe_connections(patroni_cluster, name) == 0)
        with caplog.at_level(logging.WARNING, logger="topology"):
            forwarder.send_signal(signal.SIGSTOP)  # partitioned: connects hang, reads time out
            await writing_until(lambda: cluster.stats().dcs_answers is False)
            # SQL probing goes on, every lost_interval, with no kept connection
            # (tests/topology/test_dcs_fleet.py counts them).
            rounds = cluster.stats().rounds
            await writing_until(lambda: cluster.stats().rounds >= rounds + 3)
            forwarder.send_signal(signal.SIGCONT)
            await writing_until(lambda: cluster.stats().dcs_answers)
            forwarder.kill()  # stopped: connections refused
            await writing_until(lambda: cluster.stats().dcs_answers is False)
        stats = cluster.stats()
    assert stats.dcs_outages == 2
    assert counters.dcs_outages == 2
    assert writes > 0
    lost = [r for r in caplog.records if "does not answer" in r.getMessage()]
    back = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(lost) == 2
    assert len(back) == 1
    assert all(r.levelno == logging.WARNING for r in lost + back)


async def test_patronis_rest_api_is_a_source_too(
    patroni_cluster: PatroniCluster, make_resolver: Any
) -> None:
    layout = patroni_cluster.cluster.layout
    urls = ",".join(f"http://127.0.0.1:{layout.rest_port(m)}" for m in layout.members)
    # The first endpoint refuses, the second accepts and closes (a Patroni
    # restarting, a proxy with no backend; on main that ended the poller): the
    # next one answers.
    async with HostileHttp("accept_and_close") as closing:
        cluster = make_resolver(etcd=None, scope=None,
                                rest=f"http://127.0.0.1:1,{closing.url},{urls}",
                                dcs_check_interval=0.2)  # fmt: skip
        async with cluster:
            leader = patroni_cluster.leader()
            assert await cluster.master() == f"127.0.0.1:{leader.port}"
            assert sorted(probed(cluster)) == sorted(patroni_cluster.hosts)
            new_leader = await asyncio.to_thread(patroni_cluster.switchover)
            new = f"127.0.0.1:{new_leader.port}"
            await eventually(lambda: cluster.view.primary == new, timeout=30)
            assert cluster.stats().dcs_outages == 0


async def test_a_member_that_dies_leaves_the_probed_hosts_and_comes_back(
    patroni_cluster: PatroniCluster, make_resolver: Any
) -> None:
    layout = patroni_cluster.cluster.layout
    cluster = make_resolver()
    async with cluster:
        leader = await cluster.master()
        victim = patroni_cluster.replicas()[0]
        host = f"127.0.0.1:{victim.port}"
        assert host in probed(cluster)
        patroni_cluster.cluster.runtime.kill_member(victim.name)
        # Its key would expire with its lease after ttl; delete it as that would.
        key = f"{layout.namespace.rstrip('/')}/{layout.scope}/members/{victim.name}"
        etcd_call(patroni_cluster, "/v3/kv/deleterange", {"key": key})
        await eventually(lambda: host not in probed(cluster), timeout=10)
        patroni_cluster.heal()  # restarts it; Patroni writes its key again
        await eventually(lambda: host in probed(cluster), timeout=30)
        await eventually(lambda: host in cluster.snapshot().replicas, timeout=30)
        assert await cluster.master() == leader


async def test_members_named_unreachably_are_probed_through_the_address_map(
    patroni_cluster: PatroniCluster, make_resolver: Any, own_scope: str
) -> None:
    """As a Docker network's members seen from the host: names only the network resolves."""
    leader = patroni_cluster.leader()
    prefix = f"/service/{own_scope}/"
    for number, host in enumerate(patroni_cluster.hosts, start=1):
        port = host.rsplit(":", 1)[1]
        value = member_json(f"member{number}.invalid:{port}")
        etcd_call(
            patroni_cluster, "/v3/kv/put", {"key": f"{prefix}members/m{number}", "value": value}
        )
    mapped = {f"member{n}.invalid": "127.0.0.1" for n in range(1, 4)}
    cluster = make_resolver(scope=own_scope, namespace="/service", dcs_addresses=mapped)
    async with cluster:
        assert await cluster.master() == f"127.0.0.1:{leader.port}"
        assert sorted(probed(cluster)) == sorted(patroni_cluster.hosts)
