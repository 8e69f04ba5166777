"""Chaos in DCS mode: a real etcd behind a fault proxy, the real cluster behind proxies.

The resolver follows Patroni's keys in a real etcd (``ClusterResolver.from_patroni``;
the members' addresses are also given as ``hosts=``, the way the DCS trust
model asks an app to name the hosts that may receive its credentials). The keys are written
the way Patroni writes them (leader name, one JSON document per member whose
``conn_url`` is the member's proxy); no Patroni runs, so nothing but the test
changes them. Each case injects one fault between the app and etcd (or, for
two cases, between the app and the primary) while writes go on.

Invariants, besides those of every chaos case (bounded time, typed errors, no
write acknowledged by a non-primary, no lost acknowledged write, "safe to
retry" never stored, memory bounded): writes are acknowledged after the
fault, the store answers again (``stats().dcs_answers``) within ``RECOVER`` s,
and no background task is dead (the DCS follower included).

Cost: DCS mode runs each fault once (one driver and pre-ping setting per
fault, all four combinations covered across the faults), not twice as in
SQL-only mode.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.chaos._bed import RECOVER, Bed, dead_tasks, under_fault
from tests.chaos.conftest import Etcd, Stack
from tests.support import faultproxy as fp
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import eventually

pytestmark = [pytest.mark.chaos, pytest.mark.cluster]

# (name, fault on the etcd proxy or None for reset_now, which proxy, hold)
CASES = [
    ("etcd_latency", fp.latency(0.3), "etcd", 1.0),
    ("etcd_bandwidth", fp.bandwidth(500), "etcd", 1.0),
    ("etcd_black_hole", fp.black_hole(), "etcd", 3.0),
    ("etcd_reset_now", None, "etcd", 1.0),
    ("etcd_reset_after_s2c", fp.reset_after(100, "s2c"), "etcd", 1.0),
    ("etcd_half_open", fp.half_open("s2c"), "etcd", 3.0),
    ("etcd_drip", fp.drip(0.01), "etcd", 3.0),
    ("etcd_refuse", fp.refuse(), "etcd", 1.0),
    ("primary_black_hole", fp.black_hole(), "primary", 2.0),
    ("primary_reset_now", None, "primary", 1.0),
]
# Faults that leave the store unanswered for longer than dcs_timeout (1 s); held
# 3 s, beyond the check interval plus the timeout (2 s) with room for a busy machine.
# Not "refuse": it refuses new connections only, and a pooled one (the
# fleet's confirmer election keeps one more) still answers.
CUT_OFF = {"black_hole", "half_open", "drip"}
COMBOS = [("asyncpg", True), ("psycopg", False), ("asyncpg", False), ("psycopg", True)]


def params() -> list[Any]:
    out: list[Any] = []
    for i, (name, fault, target, hold) in enumerate(CASES):
        driver, ping = COMBOS[i % len(COMBOS)]
        label = f"{name}-{driver}-{'ping' if ping else 'noping'}"
        out.append(pytest.param(fault, target, hold, driver, ping, id=label))
    return out


@pytest.fixture
def etcd_proxy(etcd: Etcd) -> Iterator[FaultProxy]:
    with FaultProxy(etcd.port, name="etcd") as proxy:
        yield proxy


def publish(etcd: Etcd, bed: Bed, scope: str) -> None:
    """Patroni's keys for the bed's cluster: the leader's name and every member."""
    prefix = f"/service/{scope}/"
    primary = bed.cluster.primary
    for node, proxy in zip(bed.cluster.nodes, bed.proxies, strict=True):
        member = {
            "conn_url": f"postgres://{proxy.host}/postgres",
            "role": "primary" if node is primary else "replica",
            "state": "running",
        }
        etcd.put(prefix + "members/" + node.name, json.dumps(member))
    etcd.put(prefix + "leader", primary.name)


@pytest.mark.parametrize(("fault", "target", "hold", "driver", "pre_ping"), params())
async def test_writes_survive_a_fault_in_dcs_mode(
    bed: Bed,
    etcd: Etcd,
    etcd_proxy: FaultProxy,
    stack: Callable[..., Stack],
    fault: fp.Fault | None,
    target: str,
    hold: float,
    driver: str,
    pre_ping: bool,
) -> None:
    """Invariants: see the module docstring; the store answers again after the fault."""
    scope = f"chaos{uuid.uuid4().hex[:8]}"
    publish(etcd, bed, scope)
    cluster, master = stack(
        driver, pre_ping, hosts=bed.hosts, etcd=f"http://{etcd_proxy.host}", scope=scope,
        dcs_timeout=1.0, dcs_check_interval=1.0,
    )  # fmt: skip
    await cluster.start()
    await eventually(lambda: cluster.stats().dcs_answers, RECOVER)
    proxy = etcd_proxy if target == "etcd" else bed.proxy(target)
    resets: list[int] = []
    if fault is None:
        inject: Callable[[], object] = lambda: resets.append(proxy.reset_now())  # noqa: E731
        lift: Callable[[], object] = lambda: None  # noqa: E731
    else:
        inject, lift = (lambda: proxy.set(fault)), (lambda: proxy.set(fp.PASS))
    outages = cluster.stats().dcs_outages
    ledger = await under_fault(bed, master, inject, lift, hold)
    ledger.check(bed)
    assert etcd_proxy.accepted, "the DCS traffic crossed the etcd proxy"
    if target == "etcd" and fault is not None and fault.kind in CUT_OFF:
        assert cluster.stats().dcs_outages > outages, "the resolver noticed the store was gone"
    assert fault is not None or resets[0] > 0, "reset_now found connections to reset"
    await eventually(lambda: cluster.stats().dcs_answers, RECOVER)
    assert not dead_tasks(cluster), f"no background task dead: {dead_tasks(cluster)}"
    assert cluster.stats().dcs_views > 0
    assert sorted(s.host for s in cluster.snapshot().hosts) == sorted(bed.hosts)
