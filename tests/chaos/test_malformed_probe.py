"""Chaos in the probe's answer: one replica answers the probe query with a malformed row.

A real replica is reached through a proxy that rewrites one column of the
probe query's DataRow (:mod:`tests.support.pgwire`): the LSN column becomes
NaN (a valid numeric, no valid position) or garbage, or ``pg_is_in_recovery()``
becomes ``maybe`` or NULL. Only the
probe's connections are touched (their first query is the probe query); the
engines' connections pass untouched. One odd host (a proxy, a
PostgreSQL-compatible server, a rogue member) must not stop the resolver from
publishing the real primary (issue 21, item 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from compose.pg import ReplicatedCluster
from tests.chaos._bed import Bed, Ledger, dead_tasks, memory_bounded
from tests.chaos.conftest import Stack
from tests.support.faultproxy import FaultProxy
from tests.support.pgwire import ColumnRewriter

pytestmark = [pytest.mark.chaos, pytest.mark.cluster]

STALE_AFTER = 1.5  # the resolver stops trusting an older snapshot after this


def is_probe(query: str) -> bool:
    return "pg_is_in_recovery() AS rec" in query


@dataclass
class Switch:
    on: bool = False
    made: list[ColumnRewriter] = field(default_factory=list)

    @property
    def rewritten(self) -> int:
        return sum(rewriter.rewritten for rewriter in self.made)


@pytest.fixture
def corrupt_bed(replicated: ReplicatedCluster) -> Iterator[Callable[[int, bytes | None], Bed]]:
    """``make(column, value)``: a bed whose first replica's probe rows get ``column``
    replaced by ``value`` while ``bed.switch.on`` (the other nodes pass untouched)."""
    proxies: list[FaultProxy] = []

    def make(column: int, value: bytes | None) -> Bed:
        switch = Switch()
        odd = replicated.nodes.index(replicated.replicas[0])

        def rewriter() -> ColumnRewriter:
            switch.made.append(ColumnRewriter(is_probe, column, value, lambda: switch.on))
            return switch.made[-1]

        for i, node in enumerate(replicated.nodes):
            chosen = rewriter if i == odd else None
            proxies.append(FaultProxy(node.port, rewriter=chosen, name=node.name).start())
        bed = Bed(replicated, proxies)
        bed.switch = switch  # type: ignore[attr-defined]
        return bed

    yield make
    for proxy in proxies:
        proxy.stop()


# NaN in the LSN column: a numeric the driver decodes happily (Decimal('NaN')) and
# no position can be made of. asyncpg reads numerics in binary, psycopg in text.
NAN_BINARY = b"\x00\x00\x00\x00\xc0\x00\x00\x00"  # ndigits 0, weight 0, sign NaN, dscale 0
CORRUPTIONS = [
    pytest.param(1, NAN_BINARY, "asyncpg", True, id="lsn_nan-asyncpg-ping"),
    pytest.param(1, b"NaN", "psycopg", False, id="lsn_nan-psycopg-noping"),
    pytest.param(1, b"garbage", "asyncpg", False, id="lsn_garbage-asyncpg-noping"),
    pytest.param(0, b"maybe", "psycopg", True, id="recovery_maybe-psycopg-ping"),
    pytest.param(0, None, "asyncpg", False, id="recovery_null-asyncpg-noping"),
]


@pytest.mark.parametrize(("column", "value", "driver", "pre_ping"), CORRUPTIONS)
async def test_one_malformed_probe_row_does_not_block_the_primary(
    corrupt_bed: Callable[[int, bytes | None], Bed],
    stack: Callable[..., Stack],
    column: int,
    value: bytes | None,
    driver: str,
    pre_ping: bool,
) -> None:
    """Invariants: while one replica's probe row is malformed (longer than the
    snapshot stays trusted), the real primary stays resolved and a write is
    acknowledged within the deadline; typed errors only, nothing acknowledged by a
    non-primary, nothing lost; no background task dead; memory bounded."""
    bed = corrupt_bed(column, value)
    cluster, master = stack(driver, pre_ping, hosts=bed.hosts, stale_after=STALE_AFTER)
    ledger = Ledger(bed.table())
    await ledger.write_until_ok(master)
    with memory_bounded():
        bed.switch.on = True  # type: ignore[attr-defined]
        try:
            await asyncio.sleep(STALE_AFTER + 1.0)  # every snapshot from before is stale now
            await ledger.write_until_ok(master, 10, "while a replica's probe row is malformed")
            assert await asyncio.wait_for(cluster.master(), 10) == bed.proxy("primary").host, (
                "the real primary stays resolved while a replica's probe row is malformed"
            )
            assert not dead_tasks(cluster), f"no background task dead: {dead_tasks(cluster)}"
        finally:
            bed.switch.on = False  # type: ignore[attr-defined]
        await ledger.write_until_ok(master)
    ledger.check(bed)
    switch: Switch = bed.switch  # type: ignore[attr-defined]
    assert switch.rewritten, "the replica's probe rows were rewritten"
