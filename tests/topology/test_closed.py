"""A closed resolver stays closed: calls raise ResolverClosedError, nothing restarts.

Regression (issue 21, item 6): ``close()`` dropped its task and the next
resolver call launched a new one, reviving the probe loop (and a DCS
follower) that nothing would ever close.
"""

from __future__ import annotations

import asyncio

import pytest

from compose.pg import PostgresNode
from topology import ClusterResolver, ResolverClosedError, Timing, TopologyError

pytestmark = pytest.mark.integration


def _topology_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("topology-")]


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_calls_after_close_raise_and_revive_nothing(
    pg_server: PostgresNode, driver: str
) -> None:
    cluster = ClusterResolver(
        [pg_server.host],
        user="postgres",
        password=pg_server.password,
        database="postgres",
        driver=driver,
        timing=Timing(interval=0.05),
    )
    assert await cluster.master() == pg_server.host
    await cluster.close()
    rounds = cluster.stats().rounds

    for call in (cluster.master, cluster.replica, cluster.start, cluster.refresh):
        with pytest.raises(ResolverClosedError, match="the resolver was closed"):
            await call()
    with pytest.raises(ResolverClosedError):
        await cluster.replica.at_least("0/0", max_wait=0.05)
    with pytest.raises(ResolverClosedError):
        async with cluster:
            pass
    cluster.report_failure(pg_server.host)  # never raises: a no-op now
    await cluster.close()  # idempotent
    await asyncio.sleep(0.2)  # what a revived loop would use for a few rounds

    assert issubclass(ResolverClosedError, TopologyError)
    assert not cluster.running
    assert _topology_tasks() == []
    assert cluster.stats().rounds == rounds


async def test_close_before_any_start_closes_for_good(pg_server: PostgresNode) -> None:
    cluster = ClusterResolver([pg_server.host], user="postgres", password=pg_server.password)
    await cluster.close()
    with pytest.raises(ResolverClosedError):
        await cluster.master()
    assert _topology_tasks() == []
