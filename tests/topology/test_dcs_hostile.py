"""The DCS sources against hostile endpoints (tests/support/hostile_http.py) and a real etcd.

For each misbehaviour, for Patroni's REST API (:class:`PatroniRest`) and for
etcd's gateway (:class:`PatroniEtcd`), the invariants: within a generous
deadline, an ``on_lost`` whose reason names the endpoint and what it did
wrong; the source's ``run()`` still alive, and recovering on the same
endpoint once it answers well (a real etcd behind it, for etcd); the
rotation going on to a good endpoint listed beside the bad one; memory
bounded by the caps (tracemalloc) under a 100 MiB endless body.

The etcd here is a real one this module starts (one process, ~1 s), with
one Patroni-like scope written into it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import socket
import subprocess
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from compose.pg import PostgresNode
from tests.support.hostile_http import BEHAVIOURS, WATCH_BEHAVIOURS, HostileHttp
from tests.support.waiting import eventually
from topology import ClusterResolver, DcsPace, Timing
from topology.dcs import DcsView, DcsWatch
from topology.dcs._etcd import EtcdGateway
from topology.dcs._http import HttpLimits, Unreachable
from topology.dcs.patroni import PatroniEtcd, PatroniRest

pytestmark = pytest.mark.integration

SCOPE = "hostile"
MEMBER = {"conn_url": "postgres://127.0.0.1:54321/postgres", "role": "primary"}
CLUSTER = {"members": [{"name": "m1", "role": "leader", "host": "127.0.0.1", "port": 54321}]}
# What each misbehaviour must be reported as (besides the endpoint's address).
REST_WORDS = {
    "accept_and_close": "closed the connection",
    "garbage_status": "not an HTTP answer",
    # httpx (issue 22): h11 refuses a head over 100 KiB as it reads it, before our count.
    "endless_headers": "header_bytes cap",
    "endless_body": "body cap of 1 MiB",
    "huge_content_length": "body cap of 1 MiB",
    "truncated_chunk": "closed the connection mid-chunk",
    # httpx does not show chunk boundaries: a chunk is held to the whole body's cap.
    "oversize_chunk": "body cap of 1 MiB",
    "json_list": "not a Patroni /cluster answer",
    "json_string": "not a Patroni /cluster answer",
    "json_missing_keys": "not a Patroni /cluster answer",
    "json_nested": "not JSON",
    "slow_drip": "time",
}
ETCD_WORDS = {
    **REST_WORDS,
    "endless_body": "body cap of 8 MiB",
    "huge_content_length": "body cap of 8 MiB",
    "oversize_chunk": "body cap of 8 MiB",
    "json_list": "not an etcd range answer",
    "json_string": "not an etcd range answer",
    "json_missing_keys": "an answer without a header",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _etcd_put(port: int, key: str, value: str) -> None:
    body = {k: base64.b64encode(v.encode()).decode() for k, v in (("key", key), ("value", value))}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v3/kv/put", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()


def _etcd_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return b"true" in answer.read()
    except OSError:
        return False


@pytest.fixture(scope="module")
def etcd() -> Iterator[int]:
    """A real etcd on loopback (its client port), holding a Patroni scope with a leader."""
    etcd_bin = shutil.which("etcd")
    assert etcd_bin, "etcd is not installed: run `make cluster-deps`"
    client, peer = _free_port(), _free_port()
    data = tempfile.mkdtemp(prefix="ctxdb-hostile-etcd-")
    proc = subprocess.Popen(
        [etcd_bin, "--name", "hostile", "--data-dir", data,
         "--listen-client-urls", f"http://127.0.0.1:{client}",
         "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"hostile=http://127.0.0.1:{peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _etcd_healthy(client):
            assert proc.poll() is None, "etcd exited"
            assert time.monotonic() < deadline, "etcd did not start"
            time.sleep(0.05)
        _etcd_put(client, f"/service/{SCOPE}/leader", "m1")
        _etcd_put(client, f"/service/{SCOPE}/members/m1", json.dumps(MEMBER))
        yield client
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


@dataclass
class Running:
    """A source's ``run()`` in a task, with what it reported."""

    task: asyncio.Task[None]
    views: list[DcsView] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


@pytest.fixture
async def follow() -> AsyncIterator[Callable[[DcsWatch], Running]]:
    started: list[Running] = []

    def start(watch: DcsWatch) -> Running:
        running = Running(asyncio.ensure_future(asyncio.sleep(0)))
        running.task = asyncio.ensure_future(watch.run(running.views.append, running.lost.append))
        started.append(running)
        return running

    yield start
    for running in started:
        running.task.cancel()
        done, _ = await asyncio.wait({running.task}, timeout=10)
        assert done, f"run() ignored its cancellation: {running.task.get_stack()}"


async def _lost_then_recovered(
    watch: DcsWatch, bad: HostileHttp, words: str, follow: Callable[[DcsWatch], Running]
) -> None:
    """The invariants on one endpoint: reported, alive, and back once it answers well."""
    running = follow(watch)
    await eventually(lambda: running.lost or running.task.done(), timeout=15)
    assert not running.task.done(), running.task  # on main, some ended run() with an exception
    assert f"127.0.0.1:{bad.port}" in running.lost[0]
    assert words in running.lost[0]
    assert not running.views
    bad.behaviour = "good"
    await eventually(lambda: running.views or running.task.done(), timeout=15)
    assert not running.task.done()
    assert running.views[-1].leader == "m1"
    assert running.views[-1].hosts == ("127.0.0.1:54321",)


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
async def test_patroni_rest_survives_a_hostile_endpoint(
    behaviour: str, follow: Callable[[DcsWatch], Running]
) -> None:
    """Issue 21 items 1, 5, 9: on main accept-and-close (and others) ended run() silently."""
    async with HostileHttp(behaviour, document=CLUSTER) as bad:
        rest = PatroniRest(bad.url, timeout=0.5, interval=0.05)
        await _lost_then_recovered(rest, bad, REST_WORDS[behaviour], follow)
        bad.behaviour = behaviour
        async with HostileHttp("good", document=CLUSTER) as good:
            rotating = follow(PatroniRest([bad.url, good.url], timeout=0.5, interval=0.05))
            await eventually(lambda: rotating.views, timeout=15)
            assert rotating.views[0].leader == "m1"
            assert not rotating.lost


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
async def test_patroni_etcd_survives_a_hostile_endpoint(
    behaviour: str, etcd: int, follow: Callable[[DcsWatch], Running]
) -> None:
    """Issue 21 items 5, 9: on main a truncated chunk or a list escaped without the endpoint."""
    async with HostileHttp(behaviour, upstream=("127.0.0.1", etcd)) as bad:
        source = PatroniEtcd(bad.url, SCOPE, timeout=0.5, check_interval=0.5)
        await _lost_then_recovered(source, bad, ETCD_WORDS[behaviour], follow)
        bad.behaviour = behaviour
        rotating = follow(PatroniEtcd([bad.url, f"http://127.0.0.1:{etcd}"], SCOPE, timeout=0.5))
        await eventually(lambda: rotating.views, timeout=15)
        assert rotating.views[0].leader == "m1"
        assert not rotating.lost


WATCH_WORDS = {"watch_stalls_mid_line": "read timeout", "watch_endless_line": "line cap of 1 MiB"}


@pytest.mark.parametrize("behaviour", WATCH_BEHAVIOURS)
async def test_a_hostile_watch_is_a_typed_error_and_the_follower_goes_on(
    behaviour: str, follow: Callable[[DcsWatch], Running]
) -> None:
    """Issue 21 item 5: on main a stalled watch hung for good; an endless line grew without cap."""
    words = WATCH_WORDS[behaviour]
    async with HostileHttp(behaviour) as bad:
        gateway = EtcdGateway(bad.url, timeout=0.5)

        async def watch_once() -> None:
            async for _ in gateway.watch_prefix(f"/service/{SCOPE}/", 2):
                pass

        with pytest.raises(Unreachable) as caught:
            await asyncio.wait_for(watch_once(), 10)
        await gateway.aclose()  # the pooled client (issue 22) is the gateway's to close
        assert f"127.0.0.1:{bad.port}" in str(caught.value)
        assert words in str(caught.value)
        # The follower reads again after each broken watch, and stays alive.
        running = follow(PatroniEtcd(bad.url, SCOPE, timeout=0.5, check_interval=0.5))
        await eventually(lambda: len(running.views) >= 3 or running.task.done(), timeout=15)
        assert not running.task.done()
        assert not running.lost  # the reads answer: the store is not lost


async def test_an_idle_watch_is_not_a_stall(etcd: int) -> None:
    """The read timeout applies inside a message only: a quiet watch lives on."""
    gateway = EtcdGateway(f"http://127.0.0.1:{etcd}", timeout=0.2)
    revision, _ = await gateway.range_prefix(f"/service/{SCOPE}/")
    seen: list[int] = []

    async def watch() -> None:
        async for changed, _events in gateway.watch_prefix(f"/service/{SCOPE}/", revision + 1):
            seen.append(changed)

    task = asyncio.ensure_future(watch())
    await asyncio.sleep(1.0)  # five read timeouts without an event
    assert not task.done()
    await asyncio.to_thread(_etcd_put, etcd, f"/service/{SCOPE}/idle", "x")
    await eventually(lambda: seen and seen[-1] > revision, timeout=10)
    task.cancel()
    await asyncio.wait({task})
    await gateway.aclose()


@pytest.mark.parametrize("source", ["rest", "etcd"])
async def test_memory_stays_within_the_caps_under_a_100_mib_body(source: str) -> None:
    """Issue 21 item 5: on main a body without Content-Length was read whole (2x its size)."""
    async with HostileHttp("endless_body") as bad:
        tracemalloc.start()
        try:
            if source == "rest":  # the REST source's default cap: 1 MiB
                with pytest.raises(Unreachable) as caught:
                    await asyncio.wait_for(PatroniRest(bad.url, timeout=5.0).poll(), 30)
            else:
                gateway = EtcdGateway(bad.url, timeout=5.0, limits=HttpLimits(body=1024 * 1024))
                with pytest.raises(Unreachable) as caught:
                    await asyncio.wait_for(gateway.range_prefix("/service/x/"), 30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "body cap of 1 MiB" in str(caught.value)
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


async def test_a_non_ascii_scope_lists_its_members(etcd: int) -> None:
    """Issue 21 item 9: on main the range end was computed in latin-1: an empty range."""
    scope = "démo-集群"
    await asyncio.to_thread(_etcd_put, etcd, f"/service/{scope}/leader", "m1")
    member = json.dumps(MEMBER)
    await asyncio.to_thread(_etcd_put, etcd, f"/service/{scope}/members/m1", member)
    source = PatroniEtcd(f"http://127.0.0.1:{etcd}", scope, timeout=2.0)
    try:
        _, events = await source.gateway.range_prefix(source.prefix)
    finally:
        await source.gateway.aclose()
    assert sorted(event.key for event in events) == [
        f"/service/{scope}/leader",
        f"/service/{scope}/members/m1",
    ]


def _cluster_of(*members: tuple[str, str, int, str]) -> dict[str, Any]:
    """A Patroni ``/cluster`` answer: (name, host, port, role) per member."""
    listed = [{"name": n, "host": h, "port": p, "role": r, "state": "running"}
              for n, h, p, r in members]  # fmt: skip
    return {"members": listed}


async def test_a_resolver_hears_of_a_rest_endpoint_that_accepts_and_closes(
    pg_server: PostgresNode,
) -> None:
    """Issue 21 item 1: on main the follower died: no outage, ``dcs_answers`` stayed True."""
    host = f"127.0.0.1:{pg_server.port}"
    async with HostileHttp("good", document=_cluster_of(("pg", "127.0.0.1", pg_server.port,
                                                          "leader"))) as rest:  # fmt: skip
        cluster = ClusterResolver.from_patroni(
            rest=rest.url, hosts=[host], user="postgres", password=pg_server.password,
            database="postgres", dcs_timeout=0.5, dcs_check_interval=0.05,
        )  # fmt: skip
        async with cluster:
            assert await cluster.master() == host
            await eventually(lambda: cluster.stats().dcs_answers, timeout=10)
            rest.behaviour = "accept_and_close"  # Patroni restarting, or a proxy with no backend
            await eventually(lambda: cluster.stats().dcs_answers is False, timeout=10)
            assert cluster.stats().dcs_outages == 1
            assert await cluster.master() == host  # SQL-only probing goes on
            rest.behaviour = "good"
            await eventually(lambda: cluster.stats().dcs_answers, timeout=10)


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_a_member_outside_the_trusted_set_never_gets_a_connection(
    pg_server: PostgresNode, driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21 item 10: on main every member the DCS named was probed with the credentials.

    The rogue member is a listener on 127.0.0.2 that counts connections (a
    direct connection at the end shows that it counts).
    """
    connections: list[object] = []

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        writer.close()

    rogue = await asyncio.start_server(accepted, "127.0.0.2", 0)
    rogue_port = rogue.sockets[0].getsockname()[1]
    document = _cluster_of(("pg", "127.0.0.1", pg_server.port, "leader"),
                           ("rogue", "127.0.0.2", rogue_port, "replica"))  # fmt: skip
    try:
        async with HostileHttp("good", document=document) as rest:
            cluster = ClusterResolver.from_patroni(
                rest=rest.url, dcs_allow="127.0.0.1", user="postgres", database="postgres",
                password=pg_server.password, timing=Timing(interval=0.3, probe_timeout=0.5),
                dcs_pace=DcsPace(interval=0.3), dcs_check_interval=0.05, driver=driver,
            )  # fmt: skip
            with caplog.at_level(logging.WARNING, logger="topology"):
                async with cluster:
                    assert await cluster.master() == f"127.0.0.1:{pg_server.port}"
                    rounds = cluster.stats().rounds
                    await eventually(lambda: cluster.stats().rounds >= rounds + 2, timeout=10)
                    probed = {state.host for state in cluster.snapshot().hosts}
                    dcs_views = cluster.stats().dcs_views
        assert not connections
        _, writer = await asyncio.open_connection("127.0.0.2", rogue_port)
        writer.close()
        await eventually(lambda: connections, timeout=10)
    finally:
        rogue.close()
        await rogue.wait_closed()
    assert probed == {f"127.0.0.1:{pg_server.port}"}
    assert dcs_views >= 3  # the rogue was named again and again
    warned = [r.getMessage() for r in caplog.records if "not among the trusted" in r.getMessage()]
    assert len(warned) == 1
    assert f"127.0.0.2:{rogue_port}" in warned[0]
    assert pg_server.password not in warned[0]


async def test_the_reads_reuse_a_kept_alive_connection(
    etcd: int, follow: Callable[[DcsWatch], Running]
) -> None:
    """Issue 22 item 1: on main every etcd call opened a TCP connection (``Connection: close``).

    The proxy records the first request of each connection it accepts, then
    passes the rest through: its ``requests`` are the connections opened.
    """
    async with HostileHttp("good", upstream=("127.0.0.1", etcd)) as proxy:
        source = PatroniEtcd(proxy.url, SCOPE, timeout=2.0, check_interval=0.05)
        running = follow(source)
        await eventually(lambda: source.requests >= 12 or running.task.done(), timeout=15)
        assert not running.task.done()
        assert not running.lost
        assert running.views[-1].leader == "m1"
        # One connection for the re-reads, one for the watch (a spare for a race).
        assert len(proxy.requests) <= 3, proxy.requests


async def _scope_with_leader(etcd: int, scope: str, leader: str) -> None:
    for name in ("m1", "m2"):
        member = json.dumps(MEMBER)
        await asyncio.to_thread(_etcd_put, etcd, f"/service/{scope}/members/{name}", member)
    await asyncio.to_thread(_etcd_put, etcd, f"/service/{scope}/leader", leader)


def _watches(proxy: HostileHttp) -> int:
    return sum(request.endswith("/v3/watch") for request in proxy.requests)


async def test_a_deaf_watch_is_replaced_one_check_later(
    etcd: int, follow: Callable[[DcsWatch], Running]
) -> None:
    """An open watch that never delivers (an etcd member cut off from its peers):
    the periodic read still brings the change, and the watch is opened again."""
    await _scope_with_leader(etcd, "deaf", "m1")
    async with HostileHttp("watch_deaf", upstream=("127.0.0.1", etcd)) as proxy:
        running = follow(PatroniEtcd(proxy.url, "deaf", timeout=2.0, check_interval=0.3))
        await eventually(lambda: bool(running.views) and _watches(proxy) == 1)
        await asyncio.to_thread(_etcd_put, etcd, "/service/deaf/leader", "m2")
        await eventually(lambda: running.views[-1].leader == "m2", timeout=5)
        await eventually(lambda: _watches(proxy) >= 2, timeout=5)
        assert not running.lost  # the reads answered all along


async def test_a_watch_a_moment_behind_the_reads_is_kept(
    etcd: int, follow: Callable[[DcsWatch], Running]
) -> None:
    """During a failover a read often sees a change whose watch event is on its way.

    On 7909001 that broke the watch: every process of a fleet reconnected
    (a TLS handshake each) at the failover instant. The watch here is 0.25 s
    behind the reads; the leader changes every 0.2 s for 3 s.
    """
    await _scope_with_leader(etcd, "late", "m1")
    async with HostileHttp("watch_late", upstream=("127.0.0.1", etcd)) as proxy:
        running = follow(PatroniEtcd(proxy.url, "late", timeout=2.0, check_interval=0.5))
        await eventually(lambda: bool(running.views) and _watches(proxy) == 1)
        for step in range(15):
            leader = ("m1", "m2")[step % 2]
            await asyncio.to_thread(_etcd_put, etcd, "/service/late/leader", leader)
            await asyncio.sleep(0.2)
        await eventually(lambda: running.views[-1].leader == "m1", timeout=5)
        assert _watches(proxy) == 1
        assert not running.lost
