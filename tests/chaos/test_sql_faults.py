"""Chaos in SQL-only mode: every proxy fault against a real primary + 2 replicas.

Each case builds the stack a user builds (ClusterResolver on the proxies'
addresses, ``DBConnect(resolver=cluster.master)``, a small pool, pre-ping on or
off, asyncpg or psycopg for both the engine and the probes), writes in a loop
while the fault lasts (``HOLD`` s), lifts it, and asserts (see tests/chaos/_bed.py):

- bounded time: every request ended within ``DEADLINE`` (answer or error);
- typed errors only (ctxdb, topology or SQLAlchemy);
- no write acknowledged by a non-primary; no lost acknowledged write; no row
  stored for a request told "safe to retry";
- after the fault, a write is acknowledged within ``RECOVER`` s;
- no background task of the resolver dead;
- memory bounded (tracemalloc peak growth under ``MEMORY_BOUND``).

Every fault meets both drivers and both pre-ping settings: each runs twice,
as (asyncpg, pre-ping on or off) and (psycopg, the other setting).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.chaos._bed import HOLD, Bed, dead_tasks, under_fault
from tests.chaos.conftest import Stack
from tests.support import faultproxy as fp

pytestmark = [pytest.mark.chaos, pytest.mark.cluster]


@dataclass(frozen=True)
class Case:
    name: str
    fault: fp.Fault | None  # None: reset_now (an action, not a state)
    role: str = "primary"  # whose proxy
    hold: float = HOLD  # seconds; longer than probe_timeout where the probe must notice


CASES = [
    Case("latency", fp.latency(0.2)),
    Case("bandwidth", fp.bandwidth(2_000)),
    Case("black_hole", fp.black_hole(), hold=2.0),
    Case("black_hole_replica", fp.black_hole(), "replica", hold=2.0),
    Case("reset_now", None),
    Case("reset_after_c2s", fp.reset_after(200, "c2s")),
    Case("half_open", fp.half_open("s2c"), hold=2.0),
    Case("half_open_c2s", fp.half_open("c2s"), hold=2.0),
    Case("drip", fp.drip(0.01)),
    Case("refuse", fp.refuse()),
]


def combos() -> list[Any]:
    params: list[Any] = []
    for i, case in enumerate(CASES):
        pre_ping = i % 2 == 0
        for driver, ping in (("asyncpg", pre_ping), ("psycopg", not pre_ping)):
            label = f"{case.name}-{driver}-{'ping' if ping else 'noping'}"
            params.append(pytest.param(case, driver, ping, id=label))
    return params


def injector(bed: Bed, case: Case) -> tuple[Callable[[], object], Callable[[], object]]:
    proxy = bed.proxy(case.role)
    if case.fault is None:

        def reset() -> None:
            assert proxy.reset_now() > 0, "reset_now found connections to reset"

        return reset, lambda: None
    fault = case.fault
    return (lambda: proxy.set(fault)), (lambda: proxy.set(fp.PASS))


@pytest.mark.parametrize(("case", "driver", "pre_ping"), combos())
async def test_writes_survive_a_fault_on_one_host(
    bed: Bed, stack: Callable[..., Stack], case: Case, driver: str, pre_ping: bool
) -> None:
    """Invariants: bounded time, typed errors, no write acknowledged by a non-primary,
    no lost acknowledged write, "safe to retry" never stored, a write acknowledged
    after the fault, no background task dead, memory bounded."""
    cluster, master = stack(driver, pre_ping)
    inject, lift = injector(bed, case)
    ledger = await under_fault(bed, master, inject, lift, case.hold)
    ledger.check(bed)
    assert not dead_tasks(cluster), f"no background task dead: {dead_tasks(cluster)}"
    assert ledger.acked, "some write was acknowledged"


OUTAGE_DEADLINE = 6.0
OUTAGES = [
    pytest.param(fp.black_hole(), "asyncpg", False, id="black_hole_all-asyncpg-noping"),
    # refuse + reset now: every server down (a stopped server refuses and resets).
    pytest.param(fp.refuse(), "psycopg", True, id="down_all-psycopg-ping"),
]


@pytest.mark.parametrize(("fault", "driver", "pre_ping"), OUTAGES)
async def test_a_total_outage_gives_typed_errors_in_bounded_time(
    bed: Bed, stack: Callable[..., Stack], fault: fp.Fault, driver: str, pre_ping: bool
) -> None:
    """Every host unreachable for longer than a request may take (``OUTAGE_DEADLINE``;
    the resolver waits 2 s for a primary, DBConnect 2 s for another host after a
    failed connect: ``failover_wait``, 5 s by default). Invariants: every request ends
    within the deadline, with a typed error while nothing can answer (none hangs
    until the outage ends); nothing acknowledged is lost; writes resume after;
    no background task dead; memory bounded."""
    cluster, master = stack(driver, pre_ping, failover_wait=2.0, wait_timeout=2.0)

    def inject() -> None:
        for proxy in bed.proxies:
            proxy.set(fault)
            if fault.kind == "refuse":
                proxy.reset_now()

    def lift() -> None:
        for proxy in bed.proxies:
            proxy.set(fp.PASS)

    ledger = await under_fault(bed, master, inject, lift, OUTAGE_DEADLINE + 1, OUTAGE_DEADLINE)
    ledger.check(bed)
    assert ledger.typed, "the outage reached the application as typed errors"
    assert not dead_tasks(cluster), f"no background task dead: {dead_tasks(cluster)}"
