"""Why following a stopped primary takes longer than the resolver needs to see it.

``python -m compose.bench.repro.first_commit_cost`` builds a primary and a
replica, then times, on the primary, the first ``INSERT ... ; COMMIT`` of:

1. a brand-new engine (what ``DBConnect`` builds on every swap): connect +
   SQLAlchemy's first-connect dialect initialisation + asyncpg's codec setup
   + the statement on a cold backend;
2. a new connection of an engine that was already used (dialect initialised);
3. a connection opened *before* the promotion to the replica, pooled, and
   used after the promotion (a standby's connections survive ``pg_promote``).

The follow benchmark's "ours: resolver names it" row shows when the
resolver published the new primary; the rest of ours' follow time is the
first commit after the swap. Measured on a quiet machine, cases 1 and 2 cost
about the same (a new engine adds little over a new connection), and case 3
is several times cheaper: a connection to a standby opened before the
promotion survives it and can commit at once. Keeping such a warm connection
per standby would take the connect and the cold backend out of the follow
time.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from compose.pg import ReplicatedCluster

INSERT = text("insert into repro_first(x) values (1)")


def engine(cluster: ReplicatedCluster, host: str, **kwargs: object) -> AsyncEngine:
    return create_async_engine(
        f"postgresql+asyncpg://postgres@{host}/postgres",
        connect_args={"password": cluster.password, "timeout": 2},
        **kwargs,
    )


async def first_commit(eng: AsyncEngine) -> float:
    started = time.perf_counter()
    async with eng.begin() as conn:
        await conn.execute(INSERT)
    return (time.perf_counter() - started) * 1000


async def main(cluster: ReplicatedCluster, rounds: int = 8) -> None:
    cluster.query(cluster.primary, "create table if not exists repro_first (x int)")
    host = cluster.primary.host
    fresh, reused = [], []
    used = engine(cluster, host, poolclass=NullPool)  # NullPool: a new connection each time
    await first_commit(used)
    for _ in range(rounds):
        new = engine(cluster, host)
        fresh.append(await first_commit(new))
        await new.dispose()
        reused.append(await first_commit(used))
    await used.dispose()
    # 3: a connection to the standby, opened before its promotion.
    standby = cluster.replicas[0]
    warm = engine(cluster, standby.host, pool_size=1, max_overflow=0)
    async with warm.connect() as conn:
        await conn.execute(text("select 1"))  # opened and pooled while read-only
    cluster.stop(cluster.primary, mode="immediate")
    cluster.promote(standby, repoint=False)
    prewarmed = await first_commit(warm)
    await warm.dispose()
    print(f"1. brand-new engine, first commit:      median {statistics.median(fresh):6.1f} ms")
    print(f"2. new connection, initialised engine:  median {statistics.median(reused):6.1f} ms")
    print(f"3. connection pre-opened to the standby: {prewarmed:6.1f} ms (one sample)")


if __name__ == "__main__":
    with ReplicatedCluster.build(replicas=1, prefix="repro") as c:
        asyncio.run(main(c))
