"""DCS mode without a storm, on the real Patroni + etcd cluster (tests/support/patroni.py).

Issue 22, items 4 and 5: a promotion the store confirms (the leader key and
the leader's own member key saying primary + running) is followed with no
probe connection at all; while the store cannot be reached (a frozen TCP
forwarder between the app and etcd: Patroni keeps its DCS), no probe
connection is kept between rounds, rounds go on at the lost pace, and a
failover is still followed over SQL alone.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any

import psycopg
import pytest

from tests.support.patroni import PatroniCluster
from tests.support.waiting import eventually
from tests.topology.test_dcs_patroni import etcd_forwarder, make_resolver  # noqa: F401
from topology import Role
from topology.pace import DcsPace
from topology.trace import Event, FailureReported, PrimaryFound, ProbeStarted

pytestmark = pytest.mark.cluster


async def test_a_promotion_the_dcs_confirms_is_followed_without_a_probe(
    patroni_cluster: PatroniCluster,
    make_resolver: Any,  # noqa: F811
) -> None:
    events: list[Event] = []
    named_by_dcs: list[bool] = []
    # Rounds every 60 s and 20 s of patience: only the store can say it.
    cluster = make_resolver(tracer=events.append, dcs_pace=DcsPace(patience=20.0))
    cluster.listen(Role.PRIMARY, lambda host: named_by_dcs.append(cluster.snapshot().dcs_named))
    async with cluster:
        old = await cluster.master()
        rounds = cluster.stats().rounds
        new_leader = await asyncio.to_thread(patroni_cluster.switchover)
        new = f"127.0.0.1:{new_leader.port}"
        assert new != old
        await eventually(lambda: cluster.view.primary == new, timeout=15)
        assert named_by_dcs[-1] is True
        assert cluster.stats().rounds == rounds  # no SQL round at all
        assert await cluster.master() == new
    pushed = next(i for i, e in enumerate(events) if isinstance(e, FailureReported))
    found = next(i for i, e in enumerate(events) if isinstance(e, PrimaryFound) and e.host == new)
    assert pushed < found
    assert not [e for e in events[pushed:found] if isinstance(e, ProbeStarted)]


def _held(patroni: PatroniCluster, name: str) -> int:
    """Connections named ``name`` on the members that answer (one may be restarting)."""
    total = 0
    for host in patroni.hosts:
        try:
            with psycopg.connect(**patroni.conninfo(host, timeout=2), autocommit=True) as conn:  # type: ignore[arg-type]
                query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                row = conn.execute(query, (name,)).fetchone()
        except psycopg.OperationalError:
            continue
        total += int(row[0]) if row else 0
    return total


async def _sample_held(patroni: PatroniCluster, name: str, seconds: float) -> list[int]:
    held = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held.append(await asyncio.to_thread(_held, patroni, name))
        await asyncio.sleep(0.1)
    return held


async def test_an_unreachable_dcs_keeps_no_probe_connection_and_still_follows_a_failover(
    patroni_cluster: PatroniCluster,
    make_resolver: Any,  # noqa: F811
    etcd_forwarder: tuple[subprocess.Popen[str], int],  # noqa: F811
) -> None:
    forwarder, port = etcd_forwarder
    lost_pace = DcsPace(lost_interval=0.3, lost_fast_interval=0.2)
    cluster = make_resolver(
        etcd=f"https://127.0.0.1:{port}", dcs_timeout=0.3, dcs_check_interval=0.3,
        dcs_pace=lost_pace,
    )  # fmt: skip
    name = cluster.options.application_name
    async with cluster:
        old = await cluster.master()
        await eventually(lambda: cluster.stats().dcs_answers, timeout=10)
        forwarder.send_signal(signal.SIGSTOP)  # partitioned: connects hang, reads time out
        await eventually(lambda: cluster.stats().dcs_answers is False, timeout=10)
        rounds = cluster.stats().rounds
        held = await _sample_held(patroni_cluster, name, 3.0)
        # Before issue 22: one kept connection per host (3 in every sample).
        assert sum(held) / len(held) <= 1.0, held
        assert cluster.stats().rounds >= rounds + 4  # it still probes, at the lost pace
        new_leader = await asyncio.to_thread(patroni_cluster.switchover)
        new = f"127.0.0.1:{new_leader.port}"
        assert new != old
        await eventually(lambda: cluster.view.primary == new, timeout=15)
        assert cluster.stats().dcs_answers is False  # SQL alone followed it
        held = await _sample_held(patroni_cluster, name, 1.0)
        assert sum(held) / len(held) <= 1.0, held
